"""The front door's sheets: calls accepted together cost the ledger one write, and each still
reads, lists and cancels as `queued` until a worker writes its next state."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from typing import Any

import aiohttp
from aiohttp import web

from gateway.service import GatewayService
from ledger.entries import entry_key
from ledger.sheets import sheet_key
from tests.support.front_door import accept_many
from tests.support.http import FakeGateway
from tests.support.ledger import BucketWrites, LedgerUnderTest
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest

CALLS = 48


async def read(front_door: GatewayService, call_id: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{front_door.url}/system/calls/{call_id}") as response,
    ):
        body = await response.read()
        return response.status, json.loads(body) if response.status == 200 else {}


async def test_calls_accepted_together_share_ledger_writes_and_each_reads_queued(
    front_door: GatewayService, ledger: LedgerUnderTest, writes: BucketWrites
) -> None:
    callback = "http://127.0.0.1:9/done?token=secret"
    ids = await accept_many(front_door, CALLS, **{"X-Callback-Url": callback})
    assert len(set(ids)) == CALLS
    for call_id in ids:
        shown = await eventually(
            lambda c=call_id: _found(read(front_door, c)), what=f"call {call_id}"
        )
        assert (shown["state"], shown["function"], shown["attempts"]) == ("queued", "echo", 0)
        assert shown["callback_url"] == "http://127.0.0.1:9/done?token=redacted"
        assert isinstance(shown["queued_at"], str)
    on_sheets = {sheet_key(call_id) for call_id in ids}
    # the test's own subscription hands it the writes a moment after the reads above
    await eventually(lambda: set(writes.keys) >= on_sheets, what="every sheet's write seen")
    assert all(key.startswith("sheet.") for key in writes.keys)
    assert len(writes.keys) < CALLS  # one write held several calls
    assert set(writes.keys) == on_sheets
    assert [ledger.states[call_id] for call_id in ids] == [["queued"]] * CALLS


async def _found(
    reading: Coroutine[Any, Any, tuple[int, dict[str, Any]]],
) -> dict[str, Any] | None:
    status, shown = await reading
    return shown if status == 200 else None


async def test_a_workers_entry_replaces_the_sheets_record_in_reads_and_lists(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    gateway.function("echo", lambda call: web.Response(text="ok"))
    ids = await accept_many(front_door, 8)
    assert ledger.store is not None
    listed = await eventually(
        lambda: _all_listed(ledger, ids, "queued"), what="the calls listed as queued"
    )
    assert {e.call_id for e in listed} >= set(ids)
    async with queue.worker(**ledger.env()):
        for call_id in ids:
            await ledger.wait_for_state(call_id, "succeeded")
    assert await ledger.store.list(state="queued") == []
    succeeded = await ledger.store.list(state="succeeded")
    assert {e.call_id for e in succeeded} == set(ids)
    assert {e.call_id for e in await ledger.store.list(limit=100)} == set(ids)  # once each


async def _all_listed(ledger: LedgerUnderTest, ids: list[str], state: str) -> object:
    assert ledger.store is not None
    listed = await ledger.store.list(state=state)
    return listed if {e.call_id for e in listed} >= set(ids) else None


async def test_a_call_known_only_from_its_sheet_is_cancelled_and_never_runs(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    gateway.function("echo", lambda call: web.Response(text="ran"))
    (call_id,) = await accept_many(front_door, 1)
    await eventually(lambda: _found(read(front_door, call_id)), what="queued")
    async with (
        aiohttp.ClientSession() as session,
        session.delete(f"{front_door.url}/system/calls/{call_id}") as response,
    ):
        assert response.status == 202
        shown = await response.json()
    assert shown["state"] == "cancelled"
    assert "pending" not in shown or not shown["pending"]  # the ledger knew the call
    assert shown["function"] == "echo"
    async with queue.worker(**ledger.env()):
        await eventually(queue.drained, what="acked without a call")
    assert gateway.calls_to("echo") == []
    status, again = await read(front_door, call_id)
    assert (status, again["state"]) == (200, "cancelled")


async def test_a_call_id_the_caller_chose_gets_its_own_queued_entry(
    front_door: GatewayService, ledger: LedgerUnderTest, writes: BucketWrites
) -> None:
    ids = await accept_many(front_door, 1, **{"X-Call-Id": "chosen-by-me"})
    assert ids == ["chosen-by-me"]
    shown = await eventually(lambda: _found(read(front_door, ids[0])), what="queued")
    assert shown["state"] == "queued"
    await eventually(lambda: writes.keys, what="the write seen by the test's subscription")
    assert writes.keys == [entry_key("chosen-by-me")]


async def test_a_call_with_a_long_callback_url_gets_its_own_entry_beside_the_sheet(
    front_door: GatewayService, ledger: LedgerUnderTest, writes: BucketWrites
) -> None:
    long_url = "http://127.0.0.1:9/" + "a" * 2000
    (call_id,) = await accept_many(front_door, 1, **{"X-Callback-Url": long_url})
    shown = await eventually(lambda: _found(read(front_door, call_id)), what="queued")
    assert (shown["state"], shown["callback_url"]) == ("queued", long_url)
    await eventually(lambda: writes.keys, what="the write seen by the test's subscription")
    assert writes.keys == [entry_key(call_id)]

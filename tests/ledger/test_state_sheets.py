"""State sheets: the entries of calls a worker runs and finishes together share one ledger
write, and each call still reads, lists and refuses a cancel as it should."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from aiohttp import web

from console.data import ConsoleData
from gateway.service import GatewayService
from ledger.entries import CallEntry, CallState, call_token, entry_key
from ledger.sheets import call_id_on, new_sheet
from ledger.state_sheets import STATE_PREFIX, STATE_SHEETS_READ, sheet_group
from ledger.store import CancelAnswer
from tests.support.front_door import accept_many
from tests.support.http import FakeGateway, held_until
from tests.support.ledger import BucketWrites, LedgerUnderTest
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest


async def test_calls_finished_together_share_a_state_sheet_and_each_reads_its_answer(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
    writes: BucketWrites,
) -> None:
    gateway.function("echo", lambda call: web.Response(body=b"answer:" + call.body))
    ids = await accept_many(front_door, 24)  # ids on the front door's sheets
    async with queue.worker(**ledger.env()):
        for call_id in ids:
            await ledger.wait_for_state(call_id, "succeeded")
    for call_id in ids:
        entry = await ledger.get(call_id)
        assert entry is not None and entry.state is CallState.SUCCEEDED
        assert entry.result is not None and entry.result.body == b"answer:x"
    await eventually(lambda: writes.state_sheets(), what="the state sheets seen")
    sheets = writes.state_sheets()
    on_sheets = [e.call_id for sheet in sheets for e in sheet]
    assert all(len(sheet) >= 2 for sheet in sheets)
    assert len(sheets) < len(on_sheets)  # one write held the final entries of several calls
    assert set(on_sheets) <= set(ids)
    own = [k for k, _ in writes.writes if k.startswith("call.")]
    assert len(sheets) + len(own) < len(ids)  # fewer writes than calls, queued ones aside
    assert ledger.store is not None
    listed = await ledger.store.list(limit=100)
    assert sorted(e.call_id for e in listed) == sorted(ids)  # once each
    assert {e.state for e in listed} == {CallState.SUCCEEDED}


async def test_calls_with_ids_of_their_own_are_written_one_by_one(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest, writes: BucketWrites
) -> None:
    gateway.function("echo", lambda call: web.Response(text="ok"))
    requests = [await queue.publish("echo", b"x") for _ in range(6)]  # random version 4 ids
    async with queue.worker(**ledger.env()):
        for request in requests:
            await ledger.wait_for_state(request.call_id, "succeeded")
    assert writes.state_sheets() == []


async def put_states(ledger: LedgerUnderTest, key: str, *entries: CallEntry) -> None:
    assert ledger.store is not None
    value = b"[" + b",".join(e.encode() for e in entries) + b"]"
    await ledger.store.kv.put(f"{STATE_PREFIX}{key}", value)


def finished(call_id: str) -> CallEntry:
    return CallEntry(call_id, "echo", CallState.SUCCEEDED, attempts=1, status=200)


async def two_on_a_sheet(ledger: LedgerUnderTest) -> tuple[str, str, str]:
    """A sheet, and two calls on it whose final entries are on one state sheet."""
    sheet = new_sheet()
    first, second = call_id_on(sheet), call_id_on(sheet)
    await put_states(ledger, f"{sheet}.w1-1-0", finished(first), finished(second))
    return sheet, first, second


async def test_calls_running_together_share_a_state_sheet_for_their_running(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
    writes: BucketWrites,
) -> None:
    release = asyncio.Event()
    gateway.function("held", held_until(release))
    ids = await accept_many(front_door, 6, "held")
    async with queue.worker(**ledger.env(), max_inflight="6"):
        for call_id in ids:
            entry = await ledger.wait_for_state(call_id, "running")
            assert entry.attempts == 1

        def shared() -> bool:  # attempts begun together: their `running` shared a write
            sheets = writes.state_sheets()
            return any(sum(e.state is CallState.RUNNING for e in s) >= 2 for s in sheets)

        await eventually(shared, what="a state sheet with two calls' running")
        release.set()
        for call_id in ids:
            await ledger.wait_for_state(call_id, "succeeded")  # the newer record stands
    assert ledger.store is not None
    assert await ledger.store.list(state="running") == []


async def test_a_cancel_that_lost_the_race_to_a_finished_call_reads_as_finished(
    ledger: LedgerUnderTest,
) -> None:
    _, ran, other = await two_on_a_sheet(ledger)
    assert ledger.store is not None
    # a cancel read the call before the state sheet landed, and wrote `cancelled` after it
    cancelled = CallEntry(ran, "echo", CallState.CANCELLED)
    await ledger.store.kv.put(entry_key(ran), cancelled.encode())
    entry = await ledger.get(ran)
    assert entry is not None and entry.state is CallState.SUCCEEDED
    listed = await ledger.store.list()
    assert sorted((e.call_id, e.state) for e in listed) == sorted(
        [(ran, CallState.SUCCEEDED), (other, CallState.SUCCEEDED)]
    )
    answer, shown = await ledger.store.cancel(other, settle=0)
    assert (answer, shown.state) == (CancelAnswer.TOO_LATE, CallState.SUCCEEDED)


async def test_a_newer_entry_of_the_calls_own_stands_over_its_state_sheet(
    ledger: LedgerUnderTest,
) -> None:
    sheet, rerun, failed_later = await two_on_a_sheet(ledger)
    assert ledger.store is not None
    # redelivered after its worker died: running again, then a second state sheet
    running = CallEntry(rerun, "echo", CallState.RUNNING, attempts=1)
    await ledger.store.kv.put(entry_key(rerun), running.encode())
    later = CallEntry(failed_later, "echo", CallState.FAILED, attempts=2, status=500)
    await put_states(ledger, f"{sheet}.w2-7-0", later, finished(call_id_on(sheet)))
    entry = await ledger.get(rerun)
    assert entry is not None and entry.state is CallState.RUNNING
    entry = await ledger.get(failed_later)
    assert entry is not None and (entry.state, entry.attempts) == (CallState.FAILED, 2)
    running_listed = await ledger.store.list(state="running")
    assert [e.call_id for e in running_listed] == [rerun]
    succeeded = await ledger.store.list(state="succeeded")
    assert rerun not in {e.call_id for e in succeeded}
    assert failed_later not in {e.call_id for e in succeeded}


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b'{"call_id": "x"}',
        b"[1, null, [], {}]",
        b'[{"call_id": 7, "state": "succeeded"}]',
        b"[" * 100_000,
    ],
    ids=["text", "object", "junk-rows", "bad-entry", "deep"],
)
async def test_a_state_sheet_that_is_not_one_is_passed_over(
    ledger: LedgerUnderTest, value: bytes
) -> None:
    sheet = new_sheet()
    call_id = call_id_on(sheet)
    assert ledger.store is not None
    await ledger.store.kv.put(f"{STATE_PREFIX}{sheet}.x", value)
    await put_states(ledger, f"{sheet}.y", finished(call_id), finished(call_id_on(sheet)))
    entry = await ledger.get(call_id)
    assert entry is not None and entry.state is CallState.SUCCEEDED
    assert call_id in {e.call_id for e in await ledger.store.list()}
    assert await ledger.get(call_id_on(new_sheet())) is None


async def test_a_state_sheet_never_names_a_call_it_does_not_hold(
    ledger: LedgerUnderTest,
) -> None:
    sheet = new_sheet()
    await put_states(
        ledger, f"{sheet}.w-1-0", finished(call_id_on(sheet)), finished(call_id_on(sheet))
    )
    assert await ledger.get(call_id_on(sheet)) is None  # same sheet, not on it


def test_state_sheet_runs_stay_within_their_byte_limit() -> None:
    from ledger.state_sheets import encode_state_sheet, sheet_runs

    values = [json.dumps({"n": n, "pad": "p" * n * 10}).encode() for n in range(40)]
    runs = [
        [v for _, v in run]
        for run in sheet_runs([(f"k{n}", v) for n, v in enumerate(values)], 2000)
    ]
    assert [v for run in runs for v in run] == values  # all of them, in order
    for run in runs:
        assert len(encode_state_sheet(run)) <= 2000 or len(run) == 1
    assert len(runs) > 1


async def test_the_consoles_last_hour_shows_a_call_on_a_state_sheet_once(
    queue: QueueUnderTest, ledger: LedgerUnderTest
) -> None:
    sheet = new_sheet()
    ran, other = call_id_on(sheet), call_id_on(sheet)
    assert ledger.store is not None
    running = CallEntry(ran, "echo", CallState.RUNNING, attempts=1)
    await ledger.store.kv.put(entry_key(ran), running.encode())  # a slow call's `running`
    await put_states(ledger, f"{sheet}.w1-1-0", finished(ran), finished(other))
    console = ConsoleData(
        queue.js,
        stream=queue.stream,
        dead_letter_stream="unused",
        ledger=ledger.store.kv,
        ledger_bucket=ledger.bucket,
        functions=_no_functions,
    )
    entries, partial = await console.recent_entries()
    assert not partial
    assert sorted((e.call_id, e.state) for e in entries) == sorted(
        [(ran, CallState.SUCCEEDED), (other, CallState.SUCCEEDED)]
    )


async def _no_functions() -> list[Any]:
    return []


def test_an_id_that_can_share_a_state_sheet_is_its_own_key_token() -> None:
    """The worker takes such an id as its key token without working it out."""
    ids = [call_id_on(new_sheet()) for _ in range(200)] + [str(uuid.uuid4()) for _ in range(200)]
    assert all(sheet_group(i) is not None and call_token(i) == i for i in ids)
    assert sheet_group("Chosen-By-Me") is None and sheet_group(str(uuid.uuid4()).upper()) is None


async def test_a_reader_looks_at_a_bounded_number_of_state_sheets(ledger: LedgerUnderTest) -> None:
    """Anyone with access can write the bucket: a prefix with more state sheets than a reader
    looks at costs it a bounded read, and the call's own entry still reads."""
    sheet = new_sheet()
    call_id = call_id_on(sheet)
    assert ledger.store is not None
    for n in range(STATE_SHEETS_READ + 6):
        await ledger.store.kv.put(f"{STATE_PREFIX}{sheet}.junk-{n}", b"\x00" * 64)
    running = CallEntry(call_id, "echo", CallState.RUNNING, attempts=1)
    await ledger.store.kv.put(entry_key(call_id), running.encode())
    entry = await ledger.get(call_id)
    assert entry is not None and entry.state is CallState.RUNNING
    assert [e.call_id for e in await ledger.store.list()] == [call_id]

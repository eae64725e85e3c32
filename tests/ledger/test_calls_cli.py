"""`ferry calls` against a real NATS: get, result, cancel and list, with one-line errors."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from nats.js.errors import NotFoundError

from ledger.entries import CallEntry, CallState
from tests.support.cli import Finished, ferry
from tests.support.http import FakeGateway
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually, free_port
from tests.support.queue import QueueUnderTest


async def calls(queue: QueueUnderTest, ledger: LedgerUnderTest, *args: str) -> Finished:
    env = {"nats_url": queue.nats_url, "nats_stream": queue.stream, **ledger.env()}
    return await ferry("calls", *args, env={**env, "dead_letter_stream": queue.dead_stream})


async def test_get_result_and_list_show_what_the_worker_recorded(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    gateway.function("echo", lambda call: web.Response(text="hello from echo"))
    gateway.function("broken", lambda call: web.Response(status=400, text="no"))
    ok = await queue.publish("echo", b"x")
    bad = await queue.publish("broken", b"x")
    async with queue.worker(**ledger.env()):
        await ledger.wait_for_state(ok.call_id, "succeeded")
        await ledger.wait_for_state(bad.call_id, "failed")

    shown = await calls(queue, ledger, "get", ok.call_id)
    assert shown.status == 0, shown.stderr
    assert "state:" in shown.stdout and "succeeded" in shown.stdout
    as_json = json.loads((await calls(queue, ledger, "get", ok.call_id, "--json")).stdout)
    assert (as_json["call_id"], as_json["attempts"], as_json["status"]) == (ok.call_id, 1, 200)

    result = await calls(queue, ledger, "result", ok.call_id)
    assert (result.status, result.stdout) == (0, "hello from echo")

    listed = await calls(queue, ledger, "list", "--state", "failed", "--json")
    assert [e["call_id"] for e in json.loads(listed.stdout)] == [bad.call_id]
    table = await calls(queue, ledger, "list", "--function", "echo")
    assert ok.call_id in table.stdout and bad.call_id not in table.stdout
    assert table.stdout.splitlines()[0].split()[:3] == ["CALL", "ID", "FUNCTION"]


async def test_cancel_a_queued_call_then_a_second_cancel_is_refused(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    gateway.function("nobody-runs-this", lambda call: web.Response(text="ran"))
    request = await queue.publish("nobody-runs-this", b"x")
    assert ledger.store is not None
    queued = CallEntry(call_id=request.call_id, function="nobody-runs-this", state=CallState.QUEUED)
    await ledger.store.kv.create(ledger.key(request.call_id), queued.encode())
    first = await calls(queue, ledger, "cancel", request.call_id)
    assert first.status == 0, first.stderr
    second = await calls(queue, ledger, "cancel", request.call_id)
    assert second.status == 1
    assert second.stderr.strip() == (
        f"ferry: call {request.call_id} cannot be cancelled: it is cancelled"
    )
    # a worker then takes the queue: the call after it runs, the cancelled one never does
    after = await queue.publish("nobody-runs-this", b"y")
    async with queue.worker(**ledger.env()):
        await ledger.wait_for_state(after.call_id, "succeeded")
        await eventually(queue.drained, what="both messages acknowledged")
    ran = [call.headers["X-Call-Id"] for call in gateway.calls_to("nobody-runs-this")]
    assert ran == [after.call_id]
    still = await ledger.get(request.call_id)
    assert still is not None and still.state is CallState.CANCELLED


async def test_an_unknown_id_is_one_line_and_exit_1(
    queue: QueueUnderTest, ledger: LedgerUnderTest
) -> None:
    for action in ("get", "result"):
        answer = await calls(queue, ledger, action, "no-such-call")
        assert answer.status == 1, action
        assert answer.stderr.strip().splitlines() == [
            "ferry: no call no-such-call in the ledger (unknown or expired)"
        ]


async def test_cancelling_an_id_not_seen_yet_cancels_it_in_advance(
    queue: QueueUnderTest, ledger: LedgerUnderTest
) -> None:
    answer = await calls(queue, ledger, "cancel", "not-seen-yet", "--json")
    assert answer.status == 0, answer.stderr
    shown = json.loads(answer.stdout)
    assert (shown["state"], shown["pending"]) == ("cancelled", True)


async def test_with_the_bucket_deleted_reads_exit_2_and_never_make_it_again(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    gateway.function("echo", lambda call: web.Response(text="ok"))
    ran = await queue.publish("echo", b"x")
    async with queue.worker(**ledger.env()):
        await ledger.wait_for_state(ran.call_id, "succeeded")
    await ledger.close()  # deletes the bucket
    for args in (("get", ran.call_id), ("result", ran.call_id), ("cancel", ran.call_id), ("list",)):
        answer = await calls(queue, ledger, *args)
        assert answer.status == 2, (args, answer.stderr)
        assert answer.stderr.strip().splitlines() == [
            f"ferry: call ledger unavailable: no bucket {ledger.bucket}"
        ]
    with pytest.raises(NotFoundError):
        await queue.js.stream_info(f"KV_{ledger.bucket}")


async def test_nats_out_of_reach_is_one_line_and_exit_2(
    queue: QueueUnderTest, ledger: LedgerUnderTest
) -> None:
    env = {"nats_url": f"nats://127.0.0.1:{free_port()}", "nats_connect_timeout": "1s"}
    answer = await ferry("calls", "get", "some-id", env={**env, **ledger.env()})
    assert answer.status == 2
    assert len(answer.stderr.strip().splitlines()) == 1
    assert "Traceback" not in answer.stderr


async def test_ferry_publish_records_the_call_as_queued(
    queue: QueueUnderTest, ledger: LedgerUnderTest
) -> None:
    env = {"nats_url": queue.nats_url, "nats_stream": queue.stream, **ledger.env()}
    published = await ferry("publish", "later", "--data", "x", env=env)
    assert published.status == 0, published.stderr
    call_id = published.stdout.strip()
    shown = json.loads((await calls(queue, ledger, "get", call_id, "--json")).stdout)
    assert (shown["state"], shown["function"], shown["attempts"]) == ("queued", "later", 0)


async def test_list_reads_every_entry_and_ends_where_the_newest_change_is_a_delete(
    ledger: LedgerUnderTest,
) -> None:
    assert ledger.store is not None
    ids = [f"call-{i}" for i in range(30)]
    for call_id in ids:
        entry = CallEntry(call_id=call_id, function="echo", state=CallState.SUCCEEDED)
        await ledger.store.kv.put(ledger.key(call_id), entry.encode())
    await ledger.store.kv.delete(ledger.key(ids[-1]))  # the stream's last message: a delete
    for _ in range(5):  # each listing is a new watch: the end of its values must be found each time
        listed = await ledger.store.list(function="echo", limit=100)
        assert [e.call_id for e in listed] == list(reversed(ids[:-1]))

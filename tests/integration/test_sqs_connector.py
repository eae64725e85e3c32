"""The SQS connector's own guarantees, each against a real moto_server and a real process."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.contract.test_sqs_contract import sqs_env
from tests.support.http import Call, FakeGateway, held_until
from tests.support.moto import MotoServer, Queues
from tests.support.ports import eventually, free_port
from tests.support.procs import FerryProcess

pytestmark = pytest.mark.slow


@pytest.fixture
async def queues(moto_server: MotoServer) -> AsyncIterator[Queues]:
    async with moto_server.sqs() as client:
        yield Queues(client, "sqs")


class Run:
    """Starts connector processes and always cleans them up."""

    def __init__(self, moto: MotoServer, gateway: FakeGateway) -> None:
        self.moto = moto
        self.gateway = gateway
        self.procs: list[FerryProcess] = []

    async def start(self, queue_url: str, **env: str) -> FerryProcess:
        proc = FerryProcess("sqs-connector", sqs_env(self.moto, self.gateway, queue_url, **env))
        self.procs.append(await proc.start())
        return proc


@pytest.fixture
async def run(moto_server: MotoServer, gateway: FakeGateway) -> AsyncIterator[Run]:
    runner = Run(moto_server, gateway)
    yield runner
    for proc in runner.procs:
        await proc.close()


def topic(url: str) -> str:
    return url.rsplit("/", 1)[-1]


async def test_function_sees_the_sqs_headers_and_attributes(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("headers")
    gateway.subscribe("fn", topic(url))
    gateway.function("fn")
    message_id = await queues.send(url, "hello", colour="blue")
    proc = await run.start(url)
    calls = await eventually(lambda: gateway.calls_to("fn"), 30, what="the call")
    headers = calls[0].headers
    assert calls[0].body == b"hello"
    assert headers["X-SQS-Message-ID"] == message_id
    assert headers["X-SQS-Queue-URL"] == url
    assert headers["X-SQS-Receive-Count"] == "1"
    assert headers["X-SQS-Attr-colour"] == "blue"
    assert headers["X-Topic"] == topic(url)
    assert headers["X-Connector"] == "sqs-connector"
    await eventually(lambda: _empty(queues, url), 30, what="the message deleted")
    assert await proc.stop() == 0, proc.output()


async def test_a_call_longer_than_the_visibility_timeout_is_invoked_once(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("heartbeat")
    gateway.subscribe("fn", topic(url))

    async def slow(call: Call) -> web.Response:
        await asyncio.sleep(5)  # 2.5 visibility timeouts
        return web.Response(text="done")

    gateway.function("fn", slow)
    await queues.send(url, "long")
    proc = await run.start(url, visibility_timeout="2s", max_inflight="4")
    await eventually(lambda: _empty(queues, url), 30, what="the message deleted")
    assert len(gateway.calls_to("fn")) == 1
    assert await proc.stop() == 0, proc.output()


async def test_retries_go_through_visibility_with_the_receive_count_as_attempt(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("retry")
    gateway.subscribe("fn", topic(url))
    statuses = iter([503, 503])
    gateway.function("fn", lambda call: web.Response(status=next(statuses, 200)))
    await queues.send(url, "flaky")
    proc = await run.start(url)
    await eventually(lambda: _empty(queues, url), 40, what="success then deletion")
    counts = [c.headers["X-SQS-Receive-Count"] for c in gateway.calls_to("fn")]
    assert counts == ["1", "2", "3"]
    assert await proc.stop() == 0, proc.output()


async def test_exhausted_message_is_left_to_the_queue_redrive_policy(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    dlq = await queues.create("redrive-dlq")
    url = await queues.create("redrive", redrive_to=dlq, max_receive=3)
    gateway.subscribe("fn", topic(url))
    gateway.function("fn", lambda call: web.Response(status=500))
    unused = await queues.create("redrive-unused")
    await queues.send(url, "doomed")
    proc = await run.start(url, max_retry_attempts="2", dead_letter_queue_url=unused)
    found = await eventually(lambda: queues.peek(dlq), 40, what="the message in the DLQ")
    assert [m["Body"] for m in found] == ["doomed"]
    assert await queues.depth(url) == 0
    assert await queues.depth(unused) == 0  # the queue's own policy wins
    # invoked max_retry_attempts times, then left (not re-invoked) until SQS redrove it
    assert len(gateway.calls_to("fn")) == 2
    assert await proc.stop() == 0, proc.output()


async def test_failed_message_goes_to_dead_letter_queue_url_with_the_reason(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("explicit")
    dead = await queues.create("explicit-dead")
    gateway.subscribe("fn", topic(url))
    gateway.function("fn", lambda call: web.Response(status=400, text="bad input"))
    await queues.send(url, "rejected", colour="red")
    proc = await run.start(url, dead_letter_queue_url=dead)
    found = await eventually(lambda: queues.peek(dead), 30, what="a dead letter")
    attributes = {k: v["StringValue"] for k, v in found[0]["MessageAttributes"].items()}
    assert found[0]["Body"] == "rejected"
    assert attributes["Ferry-Function"] == "fn.openfaas-fn"
    assert attributes["Ferry-Attempts"] == "1"
    assert attributes["Ferry-Last-Status"] == "400"
    assert "400" in attributes["Ferry-Dead-Reason"]
    assert attributes["colour"] == "red"
    await eventually(lambda: _empty(queues, url), 30, what="the original deleted")
    assert len(gateway.calls_to("fn")) == 1
    assert await proc.stop() == 0, proc.output()


async def test_failed_message_without_a_destination_stays_in_the_queue(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("keep")
    gateway.subscribe("fn", topic(url))
    gateway.function("fn", lambda call: web.Response(status=400))
    await queues.send(url, "kept")
    proc = await run.start(url)
    await eventually(lambda: "no dead-letter destination" in proc.output(), 30, what="the log")
    assert await proc.stop() == 0, proc.output()
    assert await queues.depth(url) == 1


async def test_fifo_groups_keep_their_order_and_run_in_parallel(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("ordered", fifo=True)
    gateway.subscribe("fn", topic(url))
    finished: dict[str, list[tuple[str, float, float]]] = {"a": [], "b": [], "c": []}

    async def shrinking(call: Call) -> web.Response:
        # later messages are quicker, so running a group's messages at once would reorder them
        started = time.monotonic()
        await asyncio.sleep(0.3 - 0.05 * int(call.body[1:]))
        group = call.headers["X-SQS-Group-ID"]
        finished[group].append((call.body.decode(), started, time.monotonic()))
        return web.Response(text="ok")

    gateway.function("fn", shrinking)
    for i in range(5):
        for group in finished:
            await queues.send(url, f"{group}{i}", group=group)
    proc = await run.start(url, max_inflight="10")
    await eventually(lambda: len(gateway.calls_to("fn")) >= 15, 40, what="every message")
    await eventually(lambda: _empty(queues, url), 30, what="every message deleted")
    for group, done in finished.items():
        assert [body for body, _, _ in done] == [f"{group}{i}" for i in range(5)]
        for (_, _, ended), (_, started, _) in itertools.pairwise(done):
            assert started >= ended  # one at a time within a group
    assert gateway.peak >= 2  # groups overlapped
    assert await proc.stop() == 0, proc.output()


async def test_message_no_function_subscribes_to_is_deleted_and_counted(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("nobody")
    gateway.subscribe("fn", "another-topic")
    gateway.function("fn")
    await queues.send(url, "orphan")
    port = free_port()
    proc = await run.start(url, health_port=str(port))
    await eventually(lambda: _empty(queues, url), 30, what="the unmatched message deleted")
    metrics = await _get(f"http://127.0.0.1:{port}/metrics")
    assert f'connector_unmatched_messages_total{{topic="{topic(url)}"}} 1.0' in metrics
    assert gateway.calls_to("fn") == []
    assert await proc.stop() == 0, proc.output()


async def test_sigterm_makes_unfinished_messages_visible_again(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("handback")
    gateway.subscribe("fn", topic(url))
    release = asyncio.Event()

    gateway.function("fn", held_until(release, "late"))
    await queues.send(url, "unfinished")
    proc = await run.start(url, visibility_timeout="30s", graceful_timeout="1s")
    await eventually(lambda: gateway.calls_to("fn"), 30, what="the call to start")
    started = time.monotonic()
    assert await proc.stop() == 0, proc.output()
    assert time.monotonic() - started < 10
    found = await queues.peek(url)  # visible now, not in 30s
    release.set()
    assert [m["Body"] for m in found] == ["unfinished"]


async def _empty(queues: Queues, url: str) -> bool:
    return await queues.depth(url) == 0


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


async def test_a_failing_receive_backs_off_and_recovers(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("flappy")
    gateway.subscribe("fn", topic(url))
    gateway.function("fn")
    proc = await run.start(url)
    await eventually(lambda: "consuming" in proc.output(), 30, what="the connector to start")
    await queues.client.delete_queue(QueueUrl=url)
    await eventually(lambda: "failed, retrying in" in proc.output(), 30, what="a logged back-off")
    assert proc.running
    assert await queues.create("flappy") == url
    await queues.send(url, "after")
    await eventually(lambda: gateway.calls_to("fn"), 60, what="the message after recovery")
    assert await proc.stop() == 0, proc.output()


async def test_a_retried_fifo_message_holds_back_the_rest_of_its_group(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("held-back", fifo=True)
    gateway.subscribe("fn", topic(url))
    answers = {"g0": iter([503])}
    succeeded: list[str] = []

    async def first_fails_once(call: Call) -> web.Response:
        status = next(answers.get(call.body.decode(), iter(())), 200)
        if status == 200:
            succeeded.append(call.body.decode())
        return web.Response(status=status)

    gateway.function("fn", first_fails_once)
    for i in range(4):
        await queues.send(url, f"g{i}", group="g")
    proc = await run.start(url)
    await eventually(lambda: _empty(queues, url), 40, what="every message deleted")
    assert succeeded == ["g0", "g1", "g2", "g3"]
    assert [c.body for c in gateway.calls_to("fn")][:2] == [b"g0", b"g0"]
    assert await proc.stop() == 0, proc.output()


async def test_messages_waiting_behind_their_fifo_group_leave_their_slots_to_other_queues(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    """A FIFO receive hands over several messages of one group; all but the first wait for
    the one before them. Holding a slot each while they wait, one slow group would take
    every slot, and another queue's message would wait for it to finish."""
    ordered = await queues.create("behind", fifo=True)
    beside = await queues.create("beside")
    gateway.subscribe("slow", topic(ordered))
    gateway.subscribe("quick", topic(beside))
    release, started = asyncio.Event(), asyncio.Event()
    gateway.function("slow", held_until(release, started=started))
    gateway.function("quick")
    for i in range(4):
        await queues.send(ordered, f"g{i}", group="g")
    proc = await run.start(f"{ordered},{beside}", max_inflight="2", visibility_timeout="30s")
    try:
        await asyncio.wait_for(started.wait(), 30)
        await queues.send(beside, "other")
        await eventually(lambda: gateway.calls_to("quick"), 20, what="the other queue's call")
        assert [c.body for c in gateway.calls_to("slow")] == [b"g0"]  # its group still waits
    finally:
        release.set()
    await eventually(lambda: _empty(queues, ordered), 40, what="the group deleted")
    assert [c.body for c in gateway.calls_to("slow")] == [b"g0", b"g1", b"g2", b"g3"]
    assert await proc.stop() == 0, proc.output()


async def test_a_fifo_message_waiting_longer_than_its_visibility_is_still_run_once(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    """The message behind a call that outlasts `visibility_timeout` waits in the process
    for it; it must stay invisible meanwhile, or SQS hands it out again once the group
    frees up, and it runs twice."""
    url = await queues.create("outlasted", fifo=True)
    gateway.subscribe("fn", topic(url))

    async def first_is_slow(call: Call) -> web.Response:
        if call.body == b"g0":
            await asyncio.sleep(5)  # the visibility timeout is 2 s
        return web.Response(text="ok")

    gateway.function("fn", first_is_slow)
    for i in range(3):
        await queues.send(url, f"g{i}", group="g")
    proc = await run.start(url)
    await eventually(lambda: _empty(queues, url), 40, what="the group deleted")
    await asyncio.sleep(4)  # a second hand-out would come within a visibility timeout or two
    assert [c.body for c in gateway.calls_to("fn")] == [b"g0", b"g1", b"g2"]
    assert await proc.stop() == 0, proc.output()


async def test_an_idle_queue_waiting_for_messages_keeps_one_slot_not_all_that_are_free(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    """Each queue's long poll holds slots for what it may receive. An idle queue listed
    first takes the free slots first: asking for up to `max_messages` it would keep every one
    for its whole `wait_time`, and a busy queue's messages would wait that long."""
    idle = await queues.create("idle")
    busy = await queues.create("busy")
    gateway.subscribe("quiet", topic(idle))
    gateway.subscribe("work", topic(busy))
    gateway.function("quiet")
    gateway.function("work")
    await queues.send(busy, "ready before the start")
    proc = await run.start(f"{idle},{busy}", max_inflight="2", wait_time="10s")
    started = time.monotonic()
    await eventually(lambda: gateway.calls_to("work"), 30, what="the busy queue's call")
    assert time.monotonic() - started < 8, "it waited for the idle queue's long poll"
    for i in range(5):  # the idle queue still takes a burst, one receive after another
        await queues.send(idle, f"q{i}")
    await eventually(lambda: len(gateway.calls_to("quiet")) == 5, 30, what="the burst")
    await eventually(lambda: _empty(queues, idle), 30, what="the burst deleted")
    assert await proc.stop() == 0, proc.output()


async def test_only_the_failed_subscriber_is_retried_and_several_queues_are_consumed(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    first = await queues.create("one")
    second = await queues.create("two")
    gateway.subscribe("steady", f"{topic(first)},{topic(second)}")
    gateway.subscribe("flaky", topic(first))
    statuses = iter([503])
    gateway.function("steady")
    gateway.function("flaky", lambda call: web.Response(status=next(statuses, 200)))
    await queues.send(first, "shared")
    await queues.send(second, "other")
    proc = await run.start(f"{first},{second}")
    # the retry comes back through visibility: between the failed attempt and the retry the
    # queue can look empty to moto's counts, so wait for the retry first
    await eventually(lambda: len(gateway.calls_to("flaky")) >= 2, 40, what="flaky's retry")
    await eventually(lambda: _empty(queues, first), 40, what="the shared message deleted")
    await eventually(lambda: _empty(queues, second), 40, what="the other queue's message")
    assert sorted(c.body for c in gateway.calls_to("steady")) == [b"other", b"shared"]
    assert [c.body for c in gateway.calls_to("flaky")] == [b"shared", b"shared"]
    assert await proc.stop() == 0, proc.output()


async def test_receives_only_as_many_messages_as_there_are_free_slots(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("slots")
    gateway.subscribe("fn", topic(url))

    async def slow(call: Call) -> web.Response:
        await asyncio.sleep(0.4)
        return web.Response(text="ok")

    gateway.function("fn", slow)
    for i in range(6):
        await queues.send(url, f"s{i}")
    proc = await run.start(url, max_inflight="2", visibility_timeout="30s")
    in_flight: list[int] = []

    async def sample_until_empty() -> bool:
        attrs = await queues.client.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )
        in_flight.append(int(attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"]))
        return await _empty(queues, url)

    await eventually(sample_until_empty, 40, 0.02, what="every message deleted")
    assert len(gateway.calls_to("fn")) == 6
    assert max(in_flight) == 2  # never more received than max_inflight
    assert await proc.stop() == 0, proc.output()


async def test_a_message_older_than_max_event_age_is_dead_lettered_not_delivered(
    run: Run, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("stale")
    dead = await queues.create("stale-dead")
    gateway.subscribe("fn", topic(url))
    gateway.function("fn")
    await queues.send(url, "old news")
    await asyncio.sleep(2.5)  # the message ages past max_event_age before anyone reads it
    proc = await run.start(url, dead_letter_queue_url=dead, max_event_age="2s")
    found = await eventually(lambda: queues.peek(dead), 30, what="a dead letter")
    attributes = {k: v["StringValue"] for k, v in found[0]["MessageAttributes"].items()}
    assert found[0]["Body"] == "old news"
    assert attributes["Ferry-Dead-Reason"].startswith("expired: the event is ")
    assert attributes["Ferry-Last-Status"] == "410"
    await eventually(lambda: _empty(queues, url), 30, what="the original deleted")
    await queues.send(url, "fresh news")
    await eventually(lambda: gateway.calls_to("fn"), 30, what="the fresh message delivered")
    assert [c.body for c in gateway.calls_to("fn")] == [b"fresh news"]
    assert await proc.stop() == 0, proc.output()

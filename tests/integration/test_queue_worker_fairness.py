"""Fair mode: one function's backlog, cap or overload never holds up another's."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import generate_latest

from asyncq.layout import DEAD_REASON
from asyncq.publisher import Publisher, build_request
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest


class Concurrency:
    """Counts calls running at once per function, from the function's side."""

    def __init__(self) -> None:
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.started: list[str] = []  # function of each call, in the order they started

    def sleeping(
        self, name: str, seconds: float, capacity: int = 0
    ) -> Callable[[Call], Awaitable[web.Response]]:
        """A function taking `seconds`; past `capacity` calls at once it answers 429."""

        async def handler(call: Call) -> web.Response:
            if capacity and self.running[name] >= capacity:
                return web.Response(status=429, text="too many")
            self.running[name] += 1
            self.peak[name] = max(self.peak[name], self.running[name])
            self.started.append(name)
            try:
                await asyncio.sleep(seconds)
            finally:
                self.running[name] -= 1
            return web.Response(text="ok")

        return handler


def go_queue_request(function: str, body: bytes, callback: str = "") -> bytes:
    """A QueueRequest as an OpenFaaS gateway (Go) writes it on the plain subject."""
    return json.dumps(
        {
            "Header": {"X-Call-Id": [str(uuid.uuid4())], "Content-Type": ["text/plain"]},
            "Host": "gateway:8080",
            "Body": base64.b64encode(body).decode(),
            "Method": "POST",
            "Path": "",
            "QueryString": "",
            "Function": function,
            "QueueName": "",
            "Annotations": None,
            "CallbackUrl": callback or None,
        }
    ).encode()


async def fair_publisher(queue: QueueUnderTest) -> Publisher:
    """A publisher as the front door has it once a fair worker runs: per-function subjects."""
    publisher = Publisher(queue.js, queue.stream)
    assert await publisher.learn_layout()
    return publisher


async def test_a_quick_function_is_not_held_up_by_a_slow_backlog_from_the_front_door(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    seen = Concurrency()
    gateway.function("slow", seen.sleeping("slow", 0.5))
    gateway.function("quick", seen.sleeping("quick", 0))
    async with queue.worker(max_inflight="16") as worker:
        publisher = await fair_publisher(queue)
        for i in range(200):
            await publisher.enqueue(build_request("slow", body=b"%d" % i))
        for i in range(20):
            await publisher.enqueue(build_request("quick", body=b"%d" % i))
        await eventually(lambda: seen.started.count("quick") == 20, 30, what="20 quick calls")
        slow_before = seen.started.count("slow")
        metrics = generate_latest(worker.registry).decode()
    # In arrival order all 200 slow calls would start first.
    assert slow_before < 100, slow_before
    pending = re.search(r'queue_worker_pending_messages\{function_name="slow"\} (\d+)', metrics)
    assert pending is not None and int(pending.group(1)) > 50, metrics
    assert 'queue_worker_function_limit{function_name="slow"} 16.0' in metrics


async def _slow_calls_before_the_quick_ones(
    queue: QueueUnderTest, gateway: FakeGateway, slow_seconds: float, **env: str
) -> int:
    """200 calls to `slow` then 20 to `quick`, all on the plain subject in Go's format: how
    many slow calls had started when the last quick one did (200 in arrival order)."""
    seen = Concurrency()
    gateway.function("slow", seen.sleeping("slow", slow_seconds))
    gateway.function("quick", seen.sleeping("quick", 0))
    for i in range(200):
        await queue.publish_raw(go_queue_request("slow", b"%d" % i))
    for i in range(20):
        await queue.publish_raw(go_queue_request("quick", b"%d" % i))
    async with queue.worker(max_inflight="16", **env):
        await eventually(lambda: seen.started.count("quick") == 20, 30, what="20 quick calls")
        return seen.started.count("slow")


async def test_a_quick_function_is_not_held_up_by_a_backlog_on_the_plain_subject(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    slow_before = await _slow_calls_before_the_quick_ones(queue, gateway, 0.5)
    assert slow_before < 100, slow_before


async def test_a_single_function_plain_backlog_longer_than_fair_sort_after_is_read_past(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    """Held calls that each start well within a second (none is held long enough to be moved
    for it), but 200 of them: about 4 s of work in arrival order. The worker measures that,
    reads on past the backlog and finds the quick calls behind it (with the rule off, all
    200 slow calls start first)."""
    env = {"prefetch": "0", "fair_sort_after": "2s"}
    slow_before = await _slow_calls_before_the_quick_ones(queue, gateway, 0.3, **env)
    assert slow_before < 100, slow_before


async def test_the_front_door_stores_calls_on_the_function_subject_once_a_fair_worker_runs(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver, tmp_path: Path
) -> None:
    gateway.function("echo")
    functions = write_functions(
        tmp_path / "f.yml", {"echo": {"url": f"{gateway.url}/function/echo"}}
    )
    async with queue.worker(max_inflight="4"):
        env = gateway_env(queue, functions_file=str(functions))
        async with running_gateway(env) as front, aiohttp.ClientSession() as http:
            url = f"{front.url}/async-function/echo"
            headers = {"X-Callback-Url": receiver.url()}
            async with http.post(url, data=b"hi", headers=headers) as response:
                assert response.status == 202
            (callback,) = await receiver.wait_for(1)
    assert callback.body == b"hi"
    plain = await queue.js.consumer_info(queue.stream, "faas-workers")
    assert plain.delivered.stream_seq == 0  # nothing went through the sorter
    info = await queue.js.stream_info(queue.stream)
    assert info.state.last_seq == 1  # one message, on faas-request.fn.echo


async def test_static_mode_keeps_arrival_order(queue: QueueUnderTest, gateway: FakeGateway) -> None:
    seen = Concurrency()
    gateway.function("slow", seen.sleeping("slow", 0.05))
    gateway.function("quick", seen.sleeping("quick", 0))
    for i in range(30):
        await queue.publish("slow", b"%d" % i)
    for i in range(5):
        await queue.publish("quick", b"%d" % i)
    async with queue.worker(max_inflight="4", scaling_mode="static"):
        await eventually(lambda: len(seen.started) == 35, 30, what="35 calls")
    assert seen.started.index("quick") >= 26  # FIFO: at most the slots' worth out of order
    assert await queue.js.stream_info(queue.stream) is not None


async def test_a_replica_killed_mid_run_loses_nothing(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    seen = Concurrency()
    gateway.function("work", seen.sleeping("work", 0.2))
    gateway.function("other", seen.sleeping("other", 0))
    env = queue.env(max_inflight="4", ack_wait="2s")
    first = await FerryProcess("queue-worker", env).start()
    second = await FerryProcess("queue-worker", env).start()
    try:
        ids = set()
        for i in range(60):
            request = await queue.publish("work", b"%d" % i, callback_url=receiver.url())
            ids.add(request.call_id)
        await eventually(lambda: len(receiver.received) >= 10, 30, what="10 callbacks")
        await first.kill()
        for i in range(10):
            request = await queue.publish("other", b"%d" % i, callback_url=receiver.url())
            ids.add(request.call_id)
        await eventually(
            lambda: ids <= {r.headers["X-Call-Id"] for r in receiver.received},
            60,
            what="a callback for every call",
        )
        assert await queue.pending() == 0
        assert await second.stop() == 0
    finally:
        await first.close()
        await second.close()


async def test_ferry_max_inflight_caps_a_function_and_others_keep_flowing(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    seen = Concurrency()
    gateway.function("capped", seen.sleeping("capped", 0.1))
    gateway.function("free", seen.sleeping("free", 0.1))
    cap = {"ferry.max_inflight": "3"}
    for i in range(30):
        await queue.publish("capped", b"%d" % i, annotations=cap)
    for i in range(30):
        await queue.publish("free", b"%d" % i)
    async with queue.worker(max_inflight="16"):
        await eventually(lambda: seen.started.count("free") == 30, 30, what="30 free calls")
        capped_before = seen.started.count("capped")
        await eventually(lambda: seen.started.count("capped") == 30, 30, what="30 capped calls")
    assert seen.peak["capped"] == 3
    assert seen.peak["free"] > 3
    assert capped_before < 30  # the free function did not wait for the capped backlog


async def test_weights_share_the_slots_about_three_to_one(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    seen = Concurrency()
    gateway.function("heavy", seen.sleeping("heavy", 0.05))
    gateway.function("light", seen.sleeping("light", 0.05))
    for i in range(80):
        await queue.publish("heavy", b"%d" % i, annotations={"ferry.weight": "3"})
        await queue.publish("light", b"%d" % i, annotations={"ferry.weight": "1"})
    async with queue.worker(max_inflight="4"):
        await eventually(lambda: len(seen.started) >= 80, 30, what="80 calls")
    both_backlogged = seen.started[10:70]
    ratio = both_backlogged.count("heavy") / max(1, both_backlogged.count("light"))
    assert 2.0 <= ratio <= 4.5, ratio


async def test_the_limiter_finds_a_functions_capacity_without_losing_calls(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    seen = Concurrency()
    gateway.function("narrow", seen.sleeping("narrow", 0.1, capacity=4))
    for i in range(120):
        await queue.publish("narrow", b"%d" % i, callback_url=receiver.url())
    async with queue.worker(max_inflight="16", max_retry_attempts="3"):
        await receiver.wait_for(120, timeout=60)
    assert {r.headers["X-Function-Status"] for r in receiver.received} == {"200"}
    assert await queue.dead_letters() == []
    refused = len(gateway.calls_to("narrow")) - 120
    assert refused <= 0.2 * 120, refused


async def test_plain_calls_run_once_and_the_worker_dead_letters_what_it_cannot_read(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    """The sorter reads only `Function`; whatever else is wrong with a call is found by the
    worker that runs it, which dead-letters it as before. Every call runs once, whether its
    lane held it from the plain subject or it was moved, and no copy is stored twice."""
    gateway.function("echo")
    for i in range(40):
        await queue.publish_raw(go_queue_request("echo", b"%d" % i))
    broken = json.loads(go_queue_request("echo", b"x"))
    broken["Body"] = "not base64 !"
    await queue.publish_raw(json.dumps(broken).encode())
    await queue.publish_raw(b"not json")
    async with queue.worker(max_inflight="8") as worker:
        await eventually(queue.drained, 30, what="every call done")
        await eventually(lambda: _dead_letter_count(queue, 2), 10, what="two dead letters")
    assert sorted(c.body for c in gateway.calls_to("echo")) == sorted(b"%d" % i for i in range(40))
    plain = await queue.js.consumer_info(queue.stream, "faas-workers")
    assert plain.delivered.stream_seq == 42 and plain.num_ack_pending == 0
    # 40 calls, the unreadable one and the one the sorter refused, each delivered once
    assert await queue.deliveries(worker) == 42
    reasons = [d.headers.get(DEAD_REASON, "") for d in await queue.dead_letters()]
    assert any("base64" in reason for reason in reasons), reasons
    assert await queue.stored() == 0


async def test_a_worker_that_keeps_up_runs_plain_calls_without_moving_them(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    """One function's calls on the plain subject and a worker that keeps up: its lane holds
    and runs them from the plain subject (no copy stored, no per-function delivery)."""
    seen = Concurrency()
    gateway.function("steady", seen.sleeping("steady", 0.01))
    async with queue.worker(max_inflight="8") as worker:
        assert worker.fair is not None
        for i in range(200):
            await queue.publish_raw(go_queue_request("steady", b"%d" % i))
        await eventually(lambda: len(seen.started) >= 200, 30, what="200 calls")
        await eventually(queue.drained, 10, what="every call acknowledged")
        assert worker.fair.sorter.moved_total == 0
        assert worker.fair.sorter.sort_ahead is not None
        assert worker.fair.sorter.sort_ahead.started_total == 200
        assert seen.peak["steady"] <= 8
    assert await queue.deliveries(worker) == 200


async def _dead_letter_count(queue: QueueUnderTest, count: int) -> bool:
    return len(await queue.dead_letters()) == count


async def test_moves_the_stream_refuses_are_counted_and_the_call_runs_once_it_takes_them(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    release = asyncio.Event()

    async def blocking(call: Call) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    gateway.function("block", blocking)
    gateway.function("echo")
    # one slot, none ahead: a call held behind `block` is moved after HOLD_SECONDS
    async with queue.worker(max_inflight="1", prefetch="0") as worker:

        def counted(name: str) -> float:
            return worker.registry.get_sample_value(name) or 0.0

        kept = (await queue.js.stream_info(queue.stream)).config
        per_function = [s for s in kept.subjects or [] if ".fn." in s]
        assert per_function
        narrowed = dataclasses.replace(
            kept, subjects=[s for s in kept.subjects or [] if s not in per_function]
        )
        await queue.js.update_stream(narrowed)
        try:
            await queue.publish_raw(go_queue_request("block", b"first"))
            await eventually(lambda: gateway.running == 1, 10, what="block running")
            await queue.publish_raw(go_queue_request("echo", b"moved late"))
            await eventually(
                lambda: counted("queue_worker_sorter_failures_total") >= 1, 20, what="a failure"
            )
            assert not gateway.calls_to("echo")
        finally:
            await queue.js.update_stream(kept)
            release.set()
        await eventually(lambda: gateway.calls_to("echo"), 30, what="the call run")
        await eventually(queue.drained, 10, what="every call acknowledged")
    assert [c.body for c in gateway.calls_to("echo")] == [b"moved late"]
    # `block`, and `echo` twice: the failed move handed it back once
    assert await queue.deliveries(worker) == 3


async def test_a_retried_plain_call_that_is_then_moved_keeps_its_attempts(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    """A plain-subject call's first attempt ran from the plain subject; its retry comes back
    there, waits behind another call and is moved: the copy counts the attempt already used,
    so the call gets three attempts in all, not four."""
    release = asyncio.Event()

    async def blocking(call: Call) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    gateway.function("failing", lambda call: _status(500))
    gateway.function("block", blocking)
    env = {
        "max_inflight": "1",
        "prefetch": "0",
        "max_retry_attempts": "3",
        "initial_retry_wait": "1s",
        "max_retry_wait": "1s",
        "breaker_enabled": "false",
    }
    async with queue.worker(**env) as worker:
        assert worker.fair is not None
        await queue.publish_raw(go_queue_request("failing", b"f"))
        await eventually(lambda: gateway.calls_to("failing"), 10, what="the first attempt")
        await queue.publish_raw(go_queue_request("block", b"b"))
        await eventually(lambda: gateway.running == 1, 10, what="block running")
        # the retry is held behind `block`, then moved
        await eventually(lambda: worker.fair.sorter.moved_total >= 1, 20, what="a move")
        release.set()
        await eventually(lambda: _dead_letter_count(queue, 1), 30, what="one dead letter")
    assert len(gateway.calls_to("failing")) == 3


async def _status(status: int) -> web.Response:
    return web.Response(status=status, text="no")

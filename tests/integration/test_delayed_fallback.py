"""Delayed calls on a request stream without message schedules (OpenFaaS Pro's `OF_` stream,
served as it is, or a NATS before 2.12): they wait on ferry's own delayed stream, are moved to
the queue by the workers' waker when due, and hold no worker slot while they wait."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from asyncq.codec import encode
from asyncq.delayed import (
    DELAY_TARGET,
    delayed_stream_name,
    delayed_subject,
    ensure_delayed_stream,
)
from asyncq.jetstream import ensure_streams
from asyncq.layout import DEFAULT_DURABLE
from asyncq.publisher import Publisher, build_request
from asyncq.timing import NOT_BEFORE, CallTiming
from queue_worker.delay_waker import WAKER_ACK_WAIT, WAKER_DURABLE, DelayWaker
from tests.support.brokers import NatsServer
from tests.support.cli import ferry
from tests.support.delayed import (  # noqa: F401  (`functions_file`)
    LATE_ALLOWED,
    echo_functions_file,
    post,
)
from tests.support.front_door import gateway_env, running_gateway
from tests.support.http import FakeGateway
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest, queue_on


class ProStream:
    """A queue whose subjects an `OF_` stream without schedules already holds."""

    def __init__(self, queue: QueueUnderTest) -> None:
        self.queue = queue
        self.name = f"pro-{uuid.uuid4().hex[:8]}"
        self.holder = f"OF_{self.name}"
        self.delayed = delayed_stream_name(self.name)

    async def create(self) -> ProStream:
        await self.queue.js.add_stream(
            js_api.StreamConfig(
                name=self.holder,
                subjects=[self.name, f"{self.name}.*"],
                retention=js_api.RetentionPolicy.WORK_QUEUE,
                storage=js_api.StorageType.FILE,
            )
        )
        await ensure_streams(self.queue.js, self.name, f"{self.name}-dead")  # as any ferry does
        return self

    def env(self, **more: str) -> dict[str, str]:
        return {"nats_stream": self.name, "dead_letter_stream": f"{self.name}-dead", **more}

    def publisher(self) -> Publisher:
        return Publisher(self.queue.js, self.name, stored_in=self.holder)

    async def waiting(self) -> int:
        info = await self.queue.js.stream_info(self.delayed)
        return int(info.state.messages)


@pytest.fixture
async def pro(queue: QueueUnderTest) -> ProStream:
    return await ProStream(queue).create()


def wall_time(monotonic: float) -> float:
    return time.time() - (time.monotonic() - monotonic)


async def test_x_delay_on_a_stream_without_schedules_is_accepted_and_runs_on_time(
    queue: QueueUnderTest,
    pro: ProStream,
    gateway: FakeGateway,
    functions_file: Path,
    ledger: LedgerUnderTest,
) -> None:
    env = gateway_env(queue, functions_file=str(functions_file), **pro.env(**ledger.env()))
    async with running_gateway(env) as gw, queue.worker(**pro.env(**ledger.env())):
        posted = time.monotonic()
        status, text, call_id = await post(f"{gw.url}/async-function/echo", {"X-Delay": "2s"})
        assert status == 202, text
        entry = await ledger.wait_for_state(call_id, "scheduled")
        assert entry.next_attempt_at is not None
        assert await pro.waiting() == 1  # on ferry's delayed stream
        info = await queue.js.stream_info(pro.holder)
        assert not info.config.allow_msg_schedules and info.state.messages == 0
        await eventually(lambda: gateway.calls_to("echo"), timeout=30, what="the delayed call")
        await ledger.wait_for_state(call_id, "succeeded")
    ran = gateway.calls_to("echo")[0].at - posted
    assert 2.0 <= ran <= 2.0 + LATE_ALLOWED
    assert len(gateway.calls) == 1 and await pro.waiting() == 0


async def test_a_waiting_call_survives_a_worker_killed_during_its_wait(
    queue: QueueUnderTest, pro: ProStream, gateway: FakeGateway
) -> None:
    gateway.function("echo")
    request = build_request("echo", body=b"x")
    due = time.time() + 4
    await pro.publisher().enqueue(request, timing=CallTiming(not_before=due))
    process = await queue.spawn_worker(**pro.env())  # a real `ferry queue-worker`
    try:

        async def handed_back() -> bool:  # its waker has taken the call (and given it back)
            try:
                info = await queue.js.consumer_info(pro.delayed, WAKER_DURABLE)
            except NotFoundError:  # the process has not made it yet
                return False
            return info.num_ack_pending == 1 and not info.num_pending

        await eventually(handed_back, timeout=30, what="the waker to hand the call back")
        await asyncio.sleep(0.5)  # its nak on the way to NATS arrives, as a rule (see below)
    finally:
        process.kill()  # no drain: whatever the process held is lost with it
        await process.wait()
    assert not gateway.calls and time.time() < due
    async with queue.worker(**pro.env()):
        await eventually(lambda: gateway.calls_to("echo"), timeout=30, what="the delayed call")
    called = wall_time(gateway.calls[0].at)
    # the consumer shows a call the waker took and one it gave back alike: a kill between the
    # two (its nak never reached NATS) makes JetStream give the call out after the ack wait
    assert due <= called <= due + WAKER_ACK_WAIT + LATE_ALLOWED
    assert len(gateway.calls) == 1


async def test_a_target_outside_the_queue_is_replaced_by_the_calls_queue_subject(
    queue: QueueUnderTest, pro: ProStream, gateway: FakeGateway
) -> None:
    """A waiting call can only ever be moved to one of the queue's subjects."""
    gateway.function("echo")
    request = build_request("echo", body=b"x")
    await queue.js.publish(
        delayed_subject(pro.delayed, request.call_id),
        encode(request),
        headers={DELAY_TARGET: "elsewhere", NOT_BEFORE: str(time.time_ns())},
        stream=pro.delayed,
    )
    async with queue.worker(**pro.env()):
        await eventually(lambda: gateway.calls_to("echo"), timeout=30, what="the call")
    assert await pro.waiting() == 0


async def test_a_cancelled_waiting_call_is_never_invoked_without_schedules(
    queue: QueueUnderTest,
    pro: ProStream,
    gateway: FakeGateway,
    functions_file: Path,
    ledger: LedgerUnderTest,
) -> None:
    env = gateway_env(queue, functions_file=str(functions_file), **pro.env(**ledger.env()))
    async with running_gateway(env) as gw, queue.worker(**pro.env(**ledger.env())):
        _, _, call_id = await post(f"{gw.url}/async-function/echo", {"X-Delay": "2s"})
        await ledger.wait_for_state(call_id, "scheduled")
        async with (
            aiohttp.ClientSession() as session,
            session.delete(f"{gw.url}/system/calls/{call_id}") as answer,
        ):
            assert answer.status == 202, await answer.text()
        assert await pro.waiting() == 0  # removed from the delayed stream
        # a later call due after it: once it ran, the cancelled one would have run too
        _, _, later = await post(f"{gw.url}/async-function/echo", {"X-Delay": "2s"})
        await eventually(lambda: gateway.calls_to("echo"), timeout=30, what="the later call")
    assert [c.headers["X-Call-Id"] for c in gateway.calls] == [later]
    assert (await ledger.get(call_id)).state.value == "cancelled"  # type: ignore[union-attr]


async def test_waiting_calls_hold_no_worker_slot_nor_the_workers_ack_pending(
    queue: QueueUnderTest, pro: ProStream, gateway: FakeGateway
) -> None:
    gateway.function("later")
    gateway.function("now")
    due = time.time() + 8
    publisher = pro.publisher()
    async with queue.worker(**pro.env(max_inflight="1")) as worker:
        await asyncio.gather(
            *(
                publisher.enqueue(build_request("later"), timing=CallTiming(not_before=due))
                for _ in range(200)
            )
        )

        async def all_handed_back() -> bool:
            info = await queue.js.consumer_info(pro.delayed, WAKER_DURABLE)
            return info.num_ack_pending == 200 and not info.num_pending

        # JetStream counts a call nak'd with a delay as ack-pending of the waker's consumer
        # (whose max_ack_pending is the delayed stream's bound), never of the worker's.
        await eventually(all_handed_back, what="every waiting call handed back by the waker")
        await eventually(
            lambda: worker.registry.get_sample_value("queue_worker_delayed_calls_waiting") == 200,
            timeout=10,
            what="the waiting-calls gauge to count the delayed stream",
        )
        posted = time.monotonic()
        await pro.publisher().enqueue(build_request("now"))
        await eventually(lambda: gateway.calls_to("now"), what="the undelayed call")
        assert gateway.calls_to("now")[0].at - posted < 2.0
        assert time.time() < due and not gateway.calls_to("later")
        mine = await queue.js.consumer_info(pro.holder, DEFAULT_DURABLE)
        assert mine.num_ack_pending == 0 and worker.slots.used == 0
        await eventually(lambda: len(gateway.calls_to("later")) == 200, timeout=60, what="all")
    assert min(wall_time(c.at) for c in gateway.calls_to("later")) >= due


async def test_a_waiting_call_subject_is_its_own(pro: ProStream, queue: QueueUnderTest) -> None:
    """One subject per call, so a cancel purges that call and no other."""
    request = build_request("echo")
    await pro.publisher().enqueue(request, timing=CallTiming(not_before=time.time() + 60))
    waiting = await queue.js.get_last_msg(
        pro.delayed, delayed_subject(pro.delayed, request.call_id)
    )
    assert waiting.headers is not None
    assert waiting.headers["Ferry-Delay-Target"] == pro.name
    assert waiting.headers["Nats-Msg-Id"] == request.call_id


async def test_ferry_publish_delay_and_calls_cancel_without_schedules(
    queue: QueueUnderTest, pro: ProStream, ledger: LedgerUnderTest
) -> None:
    env = queue.env(**pro.env(**ledger.env()))
    done = await ferry("publish", "echo", "--delay", "1h", env=env)
    assert done.status == 0, done.stderr
    call_id = done.stdout.strip()
    assert await pro.waiting() == 1
    await ledger.wait_for_state(call_id, "scheduled")
    cancelled = await ferry("calls", "cancel", call_id, env=env)
    assert cancelled.status == 0, cancelled.stderr
    assert await pro.waiting() == 0
    assert (await ledger.get(call_id)).state.value == "cancelled"  # type: ignore[union-attr]


async def test_a_waiting_call_survives_a_nats_restart_without_schedules(
    gateway: FakeGateway,
) -> None:
    gateway.function("echo")
    server = NatsServer().start()
    try:
        async with queue_on(server.url, gateway.url) as queue:
            pro = await ProStream(queue).create()
            async with queue.worker(**pro.env()):
                request = build_request("echo", body=b"x")
                due = time.time() + 4
                await pro.publisher().enqueue(request, timing=CallTiming(not_before=due))
                server.stop()  # the call lives only in the server's stored folder now
                server.start()  # the worker (and its waker) reconnect
                await eventually(lambda: gateway.calls_to("echo"), timeout=30, what="the call")
        called = wall_time(gateway.calls[0].at)
        # if the restart came between the waker taking the call and its nak arriving, JetStream
        # gives the call out again only after the ack wait (next test)
        assert due <= called <= due + WAKER_ACK_WAIT + LATE_ALLOWED
        assert len(gateway.calls) == 1
    finally:
        server.cleanup()


async def test_a_call_a_waker_took_and_never_answered_fires_after_the_ack_wait(
    queue: QueueUnderTest, pro: ProStream, gateway: FakeGateway
) -> None:
    # what a NATS restart (or a waker's death) between delivery and nak leaves: the call is
    # ack-pending on the waker's consumer, and nobody will answer for it
    gateway.function("echo")
    await ensure_delayed_stream(queue.js, pro.delayed)
    assert await DelayWaker(queue.js, pro.delayed, pro.holder, pro.name).start()
    due = time.time() + 1
    await pro.publisher().enqueue(
        build_request("echo", body=b"x"), timing=CallTiming(not_before=due)
    )
    taken = await queue.js.pull_subscribe_bind(WAKER_DURABLE, pro.delayed)
    [lost] = await taken.fetch(1, timeout=5)
    took = time.time()
    assert lost.metadata.num_delivered == 1
    async with queue.worker(**pro.env()):
        await eventually(lambda: gateway.calls_to("echo"), timeout=40, what="the lost call")
    called = wall_time(gateway.calls[0].at)
    assert took + WAKER_ACK_WAIT - 1 <= called <= took + WAKER_ACK_WAIT + LATE_ALLOWED
    assert len(gateway.calls) == 1


async def test_a_waker_consumer_left_by_an_older_ferry_gets_the_current_ack_wait(
    queue: QueueUnderTest, pro: ProStream
) -> None:
    await ensure_delayed_stream(queue.js, pro.delayed)
    await queue.js.add_consumer(
        pro.delayed,
        js_api.ConsumerConfig(
            durable_name=WAKER_DURABLE,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_ack_pending=100,
        ),
    )
    assert await DelayWaker(queue.js, pro.delayed, pro.holder, pro.name).start()
    info = await queue.js.consumer_info(pro.delayed, WAKER_DURABLE)
    assert info.config.ack_wait == WAKER_ACK_WAIT

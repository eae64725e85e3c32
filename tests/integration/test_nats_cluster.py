"""ferry on a real 3-node JetStream cluster: replicated streams, and nothing lost when a node
(the stream leader, or the server a process is connected to) is SIGKILLed and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import timedelta

import aiohttp
import nats
import pytest
from aiohttp import web
from nats.aio.client import Client

from asyncq.jetstream import PublishError
from asyncq.large_bodies import BodyStore
from tests.support.brokers import NatsServer
from tests.support.clock import FakeClock
from tests.support.cron import cron, utc
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.nats_cluster import NatsCluster
from tests.support.ports import eventually
from tests.support.procs import run_to_exit
from tests.support.queue import QueueUnderTest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[NatsCluster]:
    started = NatsCluster().start()
    yield started
    started.stop()


@pytest.fixture
async def healthy(cluster: NatsCluster) -> AsyncIterator[NatsCluster]:
    """The cluster formed, and formed again after the test (whatever it killed is restarted)."""
    await cluster.wait_until_formed()
    yield cluster
    await cluster.heal()


@pytest.fixture
async def client(healthy: NatsCluster) -> AsyncIterator[Client]:
    nc = await nats.connect(healthy.url.split(","))
    yield nc
    await nc.close()


async def replicas(nc: Client, stream: str) -> int:
    info = await nc.jetstream().stream_info(stream)
    return int(info.config.num_replicas or 1)


async def stream_leader(nc: Client, stream: str) -> str:
    """The name of the node leading `stream` (waiting while it elects one)."""

    async def leader() -> str | None:
        try:
            info = await nc.jetstream(timeout=2).stream_info(stream)
        except (nats.errors.Error, TimeoutError):
            return None  # the test's own client may be reconnecting too
        return info.cluster.leader if info.cluster is not None else None

    name: str = await eventually(leader, 20, 0.1, what=f"a leader of {stream}")
    return name


async def test_the_worker_creates_every_stream_with_the_configured_replicas(
    healthy: NatsCluster, client: Client, gateway: FakeGateway
) -> None:
    queue = QueueUnderTest(client, healthy.url, gateway.url)
    async with queue.worker(nats_stream_replicas="3"):
        assert await replicas(client, queue.stream) == 3
        assert await replicas(client, queue.dead_stream) == 3


async def test_an_existing_r1_stream_is_moved_to_r3_and_that_is_logged(
    healthy: NatsCluster,
    client: Client,
    gateway: FakeGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = await QueueUnderTest(client, healthy.url, gateway.url).setup(replicas=1)
    gateway.function("echo")
    kept = await queue.publish("echo", b"stored while R1")
    assert await replicas(client, queue.stream) == 1
    with caplog.at_level(logging.WARNING, logger="ferry.nats"):
        async with queue.worker(nats_stream_replicas="3"):
            assert await replicas(client, queue.stream) == 3
            assert await replicas(client, queue.dead_stream) == 3
            await eventually(lambda: gateway.calls_to("echo"), what="the call stored under R1")
    assert gateway.calls_to("echo")[0].headers["X-Call-Id"] == kept.call_id
    assert f"stream {queue.stream} had 1 replicas; updated to nats_stream_replicas=3" in (
        caplog.text
    )


async def test_the_large_body_bucket_is_created_replicated_and_an_r1_one_is_moved_to_r3(
    healthy: NatsCluster, client: Client
) -> None:
    js = client.jetstream()
    fresh, existing = (f"bodies-{uuid.uuid4().hex[:8]}" for _ in range(2))
    await BodyStore(js, fresh, replicas=3).ensure()
    assert await replicas(client, f"OBJ_{fresh}") == 3
    await BodyStore(js, existing, replicas=1).ensure()
    assert await replicas(client, f"OBJ_{existing}") == 1
    await BodyStore(js, existing, replicas=3).ensure()
    assert await replicas(client, f"OBJ_{existing}") == 3


async def test_more_replicas_than_servers_exits_2_with_the_reason_nats_gives(
    healthy: NatsCluster, gateway: FakeGateway
) -> None:
    tag = uuid.uuid4().hex[:8]
    env = {
        "nats_url": healthy.url,
        "nats_stream": f"faas-request-{tag}",
        "dead_letter_stream": f"faas-dead-letter-{tag}",
        "nats_stream_replicas": "5",
        "gateway_url": gateway.url,
    }
    code, output = await run_to_exit("queue-worker", env)
    assert code == 2, output
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if line.startswith("ferry: ")]
    assert line.startswith(
        f"ferry: nats_stream_replicas=5: cannot create stream faas-request-{tag}"
    )
    assert line.endswith("NATS says: no suitable peers for placement")


async def test_replicas_on_a_single_server_exit_2_with_the_reason_nats_gives(
    nats_server: NatsServer, gateway: FakeGateway
) -> None:
    env = {"nats_url": nats_server.url, "nats_stream_replicas": "3", "gateway_url": gateway.url}
    env["nats_stream"] = f"faas-request-{uuid.uuid4().hex[:8]}"
    code, output = await run_to_exit("queue-worker", env)
    assert code == 2, output
    [line] = [line for line in output.splitlines() if line.startswith("ferry: ")]
    assert line.startswith("ferry: nats_stream_replicas=3: cannot create stream")
    assert "not supported in non-clustered mode" in line


async def test_the_worker_reconnects_to_another_server_when_its_own_is_killed(
    healthy: NatsCluster,
    client: Client,
    gateway: FakeGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = await QueueUnderTest(client, healthy.url, gateway.url).setup(replicas=3)
    gateway.function("echo")
    with caplog.at_level(logging.INFO, logger="ferry.nats"):
        async with queue.worker(nats_stream_replicas="3") as worker:
            connection = worker._nats
            assert connection is not None
            first = healthy.by_port(port_of(connection.client))
            first.kill()

            def moved() -> bool:
                url = connection.client.connected_url
                return worker.ready() and url is not None and url.port != first.port

            await eventually(moved, 30, what="connected to another server")
            await eventually(lambda: _publish(queue, b"after"), 30, what="a call stored")
            await eventually(lambda: gateway.calls_to("echo"), 30, what="the call run")
            now = healthy.by_port(port_of(connection.client))
    assert f"reconnected to NATS server nats://127.0.0.1:{now.port} ({now.name})" in caplog.text


async def test_a_worker_started_while_the_cluster_has_no_quorum_waits_for_it_then_runs_calls(
    healthy: NatsCluster, client: Client, gateway: FakeGateway
) -> None:
    queue = await QueueUnderTest(client, healthy.url, gateway.url).setup(replicas=3)
    gateway.function("echo")
    stored = await queue.publish("echo", b"stored before the outage")
    survivor, *lost = healthy.nodes
    for node in lost:
        node.kill()  # one of three: no quorum, JetStream's API answers nothing in time
    worker = await queue.spawn_worker(nats_url=survivor.url, nats_stream_replicas="3")
    try:
        await asyncio.sleep(7)  # past the first request's 5 s timeout
        if worker.returncode is not None:
            assert worker.stderr is not None
            gave_up = (await worker.stderr.read()).decode()
            raise AssertionError(f"the worker gave up on a JetStream that answers late: {gave_up}")
        for node in lost:
            node.start()
        await eventually(lambda: gateway.calls_to("echo"), 60, what="the stored call run")
    finally:
        with contextlib.suppress(ProcessLookupError):
            worker.terminate()
        assert worker.stderr is not None
        logged = (await worker.stderr.read()).decode()
        print(logged)  # shown when the test fails
    assert await worker.wait() == 0, logged
    assert gateway.calls_to("echo")[0].headers["X-Call-Id"] == stored.call_id
    # which start-up request meets the outage first depends on timing (the stream's or the
    # consumer's; only the first words of the line differ): each says it will ask again
    assert "nats: timeout; asking again" in logged


def port_of(nc: Client) -> int:
    assert nc.connected_url is not None and nc.connected_url.port is not None
    return nc.connected_url.port


async def _publish(queue: QueueUnderTest, body: bytes) -> bool:
    try:
        await queue.publish("echo", body)
    except PublishError:  # no stream leader yet
        return False
    return True


async def test_thousands_of_calls_end_with_their_200_callback_while_the_stream_leader_is_killed(
    healthy: NatsCluster,
    client: Client,
    gateway: FakeGateway,
    receiver: CallbackReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls = 2000
    attempts: Counter[str] = Counter()

    def every_tenth_first_attempt_is_503(call: Call) -> web.Response:
        attempts[call.headers["X-Call-Id"]] += 1
        if int(call.body) % 10 == 0 and attempts[call.headers["X-Call-Id"]] == 1:
            return web.Response(status=503, text="busy")
        return web.Response(text="ok")

    gateway.function("work", every_tenth_first_attempt_is_503)
    queue = QueueUnderTest(client, healthy.url, gateway.url)
    await queue.setup(replicas=3)
    call_ids: set[str] = set()
    for start in range(0, calls, 100):
        sent = await asyncio.gather(
            *(
                queue.publish("work", str(i).encode(), callback_url=receiver.url())
                for i in range(start, start + 100)
            )
        )
        call_ids.update(r.call_id for r in sent)
    leader = healthy.node(await stream_leader(client, queue.stream))

    def done() -> set[str]:
        return {
            r.headers["X-Call-Id"]
            for r in receiver.received
            if r.headers.get("X-Function-Status") == "200"
        }

    async with queue.worker(nats_stream_replicas="3", max_inflight="64", ack_wait="5s"):
        await eventually(lambda: len(done()) >= calls // 4, 60, what="a quarter done")
        leader.kill()
        await eventually(lambda: len(done()) >= calls * 3 // 4, 90, what="3/4 without the leader")
        await healthy.heal()
        await eventually(lambda: len(done()) == calls, 90, what="every call's 200 callback")
    assert done() == call_ids
    assert sum(1 for n in attempts.values() if n > 1) >= calls // 10  # the 503s were retried
    duplicates = len(receiver.received) - calls
    with capsys.disabled():
        print(
            f"\n[stream leader {leader.name} killed] {calls} calls, {duplicates} duplicate "
            f"callbacks (at-least-once), {sum(attempts.values())} function invocations"
        )


async def test_the_front_door_on_the_cluster_stores_every_call_accepted_while_a_server_is_down(
    healthy: NatsCluster,
    client: Client,
    gateway: FakeGateway,
    tmp_path: object,
) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    queue = QueueUnderTest(client, healthy.url, gateway.url)
    gateway.function("echo")
    functions = write_functions(tmp_path / "functions.yml", {"echo": {"url": gateway.url}})
    env = gateway_env(queue, functions_file=str(functions), nats_stream_replicas="3")
    async with (
        running_gateway(env) as front,
        queue.worker(nats_stream_replicas="3", max_inflight="16"),
        aiohttp.ClientSession() as http,
    ):
        assert await replicas(client, queue.stream) == 3
        healthy.node(await stream_leader(client, queue.stream)).kill()
        accepted: set[str] = set()
        for i in range(100):
            call_id = f"call-{i}"
            # a 503 may mean "perhaps stored": the client retries with the same X-Call-Id
            await eventually(lambda cid=call_id: _post(http, front.url, cid, accepted), 30)
        await eventually(
            lambda: {c.headers["X-Call-Id"] for c in gateway.calls_to("echo")} >= accepted,
            60,
            what="every accepted call run",
        )
    assert len(accepted) == 100


async def _post(http: aiohttp.ClientSession, base: str, call_id: str, accepted: set[str]) -> bool:
    async with http.post(
        f"{base}/async-function/echo", data=b"x", headers={"X-Call-Id": call_id}
    ) as response:
        if response.status == 202:
            accepted.add(call_id)
            return True
        assert response.status == 503, response.status
        return False


async def test_cron_claims_are_replicated_and_each_slot_fires_once_across_a_node_loss(
    healthy: NatsCluster, client: Client, gateway: FakeGateway
) -> None:
    gateway.subscribe("shared", "cron-function", schedule="* * * * *")
    gateway.function("shared")
    start = utc("2026-01-01T10:00:30")
    clock = FakeClock(start)
    bucket = f"cron-{uuid.uuid4().hex[:8]}"
    env = {
        "nats_url": healthy.url,
        "nats_stream_replicas": "3",
        "cron_kv_bucket": bucket,
        "concurrency_policy": "allow",
    }
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(cron(gateway, clock, **env))
        second = await stack.enter_async_context(cron(gateway, clock, **env))
        assert await replicas(client, f"KV_{bucket}") == 3

        async def run_slots(until_minute: int) -> None:
            await clock.settle(2)
            await clock.advance_to(
                start + timedelta(minutes=until_minute),
                idle=lambda: not first.firer.tasks and not second.firer.tasks,
            )
            await eventually(
                lambda: len(gateway.calls_to("shared")) >= until_minute, 20, what="the slots"
            )

        await run_slots(10)
        healthy.node(await stream_leader(client, f"KV_{bucket}")).kill()
        await stream_leader(client, f"KV_{bucket}")  # a new one elected among the other two
        await eventually(lambda: first.ready() and second.ready(), 30, what="both reconnected")
        await run_slots(20)
        await healthy.heal()
        await run_slots(30)
        await asyncio.sleep(0.3)
    ids = [c.headers["X-Call-Id"] for c in gateway.calls_to("shared")]
    assert len(ids) == len(set(ids)) == 30

"""The cron connector's guarantees, in-process on a clock the test moves, against a real
gateway double and (for replicas) a real nats-server. No test waits for a real minute."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta

from aiohttp import web

from connectors.core.runner import serve
from connectors.core.settings import load_settings
from connectors.cron.config import CronConnectorConfig
from connectors.cron.connector import CronConnector
from tests.support.brokers import NatsServer
from tests.support.clock import FakeClock
from tests.support.http import Call, FakeGateway
from tests.support.ports import eventually


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def scheduled(gateway: FakeGateway, name: str) -> list[str]:
    return [c.headers["X-Cron-Scheduled-Time"] for c in gateway.calls_to(name)]


@asynccontextmanager
async def cron(gateway: FakeGateway, clock: FakeClock, **env: str) -> AsyncIterator[CronConnector]:
    config = load_settings(
        CronConnectorConfig,
        {
            "gateway_url": gateway.url,
            "health_port": "0",
            "health_host": "127.0.0.1",
            "rebuild_interval": "1s",
            "initial_retry_wait": "20ms",
            "max_retry_wait": "100ms",
            "max_retry_attempts": "3",
            "graceful_timeout": "5s",
            **env,
        },
    )
    connector = CronConnector(config, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(connector, config.runtime, handle_signals=False, stop_event=stop)
    )
    await eventually(lambda: connector.ready() or task.done(), 20, what="connector ready")
    assert not task.done(), f"connector exited with {task.result()}"
    try:
        yield connector
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


def sample(connector: CronConnector, name: str, **labels: str) -> float:
    return connector.registry.get_sample_value(name, labels) or 0.0


async def test_slots_fire_at_the_right_instants_across_dst_changes(gateway: FakeGateway) -> None:
    for name, schedule in (("nightly", "30 2 * * *"), ("hourly", "0 * * * *")):
        gateway.subscribe(
            name, "cron-function", schedule=schedule, schedule_timezone="Europe/Berlin"
        )
        gateway.function(name)
    clock = FakeClock(utc("2026-03-28T00:00"))
    async with cron(gateway, clock) as connector:
        await clock.settle(2)
        await clock.advance_to(utc("2026-03-30T12:00"), idle=lambda: not connector.firer.tasks)
        await eventually(lambda: len(gateway.calls_to("nightly")) >= 3, 10, what="nightly calls")
        # 02:30 does not exist on 2026-03-29: it fires once, at 03:00 CEST (01:00Z)
        assert scheduled(gateway, "nightly") == [
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
        ]
        spring = [t for t in scheduled(gateway, "hourly") if t.startswith("2026-03-29T0")]
        assert spring[:4] == [f"2026-03-29T0{h}:00:00Z" for h in range(4)]  # none lost or doubled

    gateway.calls.clear()
    clock = FakeClock(utc("2026-10-24T00:00"))
    async with cron(gateway, clock) as connector:
        await clock.settle(2)
        await clock.advance_to(utc("2026-10-26T12:00"), idle=lambda: not connector.firer.tasks)
        await eventually(lambda: len(gateway.calls_to("nightly")) >= 3, 10, what="nightly calls")
        # 02:30 happens twice on 2026-10-25: it fires once, at the first (00:30Z)
        assert scheduled(gateway, "nightly") == [
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
        ]
        fall = [t for t in scheduled(gateway, "hourly") if t.startswith("2026-10-25T0")]
        assert fall[:3] == ["2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"]


async def test_every_schedule_of_a_function_fires_and_a_shared_instant_fires_once(
    gateway: FakeGateway,
) -> None:
    gateway.subscribe(
        "multi", "cron-function", schedule="15 * * * *; 45 * * * *; @hourly; 0 * * * *"
    )
    gateway.function("multi")
    clock = FakeClock(utc("2026-01-01T10:00"))
    async with cron(gateway, clock) as connector:
        await clock.settle(4)
        await clock.advance_to(utc("2026-01-01T12:00"), idle=lambda: not connector.firer.tasks)
        await eventually(lambda: len(gateway.calls_to("multi")) >= 6, 10, what="six calls")
        await asyncio.sleep(0.2)
        assert sorted(scheduled(gateway, "multi")) == [
            f"2026-01-01T{t}:00Z" for t in ("10:15", "10:45", "11:00", "11:15", "11:45", "12:00")
        ]


async def test_call_carries_cron_headers_and_a_deterministic_call_id(gateway: FakeGateway) -> None:
    gateway.subscribe("tick", "cron-function", schedule="*/5 * * * *")
    gateway.function("tick")
    clock = FakeClock(utc("2026-01-01T10:01"))
    async with cron(gateway, clock):
        await clock.settle(1)
        await clock.advance_to(utc("2026-01-01T10:05"))
        (call,) = await eventually(lambda: gateway.calls_to("tick"), 10, what="the call")
    slot_ms = int(utc("2026-01-01T10:05").timestamp() * 1000)
    assert call.path == "" and call.method == "POST"
    assert call.headers["X-Topic"] == "cron-function"
    assert call.headers["X-Connector"] == "cron-connector"
    assert call.headers["X-Cron-Schedule"] == "*/5 * * * *"
    assert call.headers["X-Cron-Scheduled-Time"] == "2026-01-01T10:05:00Z"
    assert call.headers["X-Cron-Time-Zone"] == "UTC"
    assert call.headers["X-Call-Id"] == f"tick.openfaas-fn:{slot_ms}"


async def test_two_replicas_sharing_nats_fire_each_slot_once(
    gateway: FakeGateway, nats_server: NatsServer
) -> None:
    gateway.subscribe("shared", "cron-function", schedule="* * * * *")
    gateway.function("shared")
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    env = {
        "nats_url": nats_server.url,
        "cron_kv_bucket": f"cron-{uuid.uuid4().hex[:8]}",
        # claims alone decide here: under `forbid` the loser may see the winner's busy mark
        # first and skip the slot for that reason instead (also fired once, counted otherwise)
        "concurrency_policy": "allow",
    }
    slots = 40
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(cron(gateway, clock, **env))
        second = await stack.enter_async_context(cron(gateway, clock, **env))
        await clock.settle(2)
        await clock.advance_to(
            utc("2026-01-01T10:00:30") + timedelta(minutes=slots),
            idle=lambda: not first.firer.tasks and not second.firer.tasks,
        )
        await eventually(lambda: len(gateway.calls_to("shared")) >= slots, 20, what="every slot")
        await asyncio.sleep(0.3)
        ids = [c.headers["X-Call-Id"] for c in gateway.calls_to("shared")]
        assert len(ids) == slots
        assert len(set(ids)) == slots

        def lost() -> float:
            return sum(
                sample(
                    r,
                    "cron_slots_skipped_total",
                    function="shared.openfaas-fn",
                    reason="claimed_elsewhere",
                )
                for r in (first, second)
            )

        assert lost() == slots  # every slot was claimed by one replica and lost by the other


async def test_forbid_skips_a_slot_while_the_previous_call_runs(gateway: FakeGateway) -> None:
    release = asyncio.Event()

    async def held(call: Call) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    gateway.subscribe("long", "cron-function", schedule="* * * * *")
    gateway.function("long", held)
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    async with cron(gateway, clock) as connector:
        await clock.settle(1)
        await clock.advance_to(utc("2026-01-01T10:01:30"))
        await eventually(lambda: gateway.calls_to("long"), 10, what="the first call")
        await clock.advance_to(utc("2026-01-01T10:02:30"))
        assert len(gateway.calls_to("long")) == 1
        assert (
            sample(
                connector, "cron_slots_skipped_total", function="long.openfaas-fn", reason="forbid"
            )
            == 1
        )
        release.set()
        await eventually(lambda: not connector.firer.tasks, 10, what="the first call done")
        await clock.advance_to(utc("2026-01-01T10:03:30"))
        await eventually(lambda: len(gateway.calls_to("long")) == 2, 10, what="the next slot")


async def test_allow_starts_another_call_while_the_previous_runs(gateway: FakeGateway) -> None:
    release = asyncio.Event()

    async def held(call: Call) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    gateway.subscribe("long", "cron-function", schedule="* * * * *")
    gateway.function("long", held)
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    async with cron(gateway, clock, concurrency_policy="allow"):
        await clock.settle(1)
        await clock.advance_to(utc("2026-01-01T10:02:30"))
        await eventually(lambda: gateway.running == 2, 10, what="two calls at once")
        release.set()


async def test_missed_slots_fire_only_the_latest_within_the_starting_deadline(
    gateway: FakeGateway,
) -> None:
    gateway.subscribe("report", "cron-function", schedule="*/10 * * * *")
    gateway.function("report")
    clock = FakeClock(utc("2026-01-01T12:05"))
    async with cron(gateway, clock, starting_deadline="15m") as connector:
        # down at 12:00: caught up at start, once
        await eventually(lambda: gateway.calls_to("report"), 10, what="the catch-up call")
        await clock.settle(1)
        await clock.jump(utc("2026-01-01T12:45"))  # 12:10 .. 12:40 slept through
        await eventually(lambda: len(gateway.calls_to("report")) == 2, 10, what="one more call")
        await asyncio.sleep(0.2)
        assert scheduled(gateway, "report") == ["2026-01-01T12:00:00Z", "2026-01-01T12:40:00Z"]
        assert (
            sample(
                connector,
                "cron_slots_skipped_total",
                function="report.openfaas-fn",
                reason="missed",
            )
            == 3
        )


async def test_without_a_starting_deadline_missed_slots_are_not_fired(
    gateway: FakeGateway,
) -> None:
    gateway.subscribe("report", "cron-function", schedule="*/10 * * * *")
    gateway.function("report")
    clock = FakeClock(utc("2026-01-01T12:05"))
    async with cron(gateway, clock) as connector:
        await clock.settle(1)
        await clock.jump(utc("2026-01-01T12:45"))
        await clock.advance_to(utc("2026-01-01T12:50"))
        await eventually(lambda: gateway.calls_to("report"), 10, what="the next slot")
        await asyncio.sleep(0.2)
        assert scheduled(gateway, "report") == ["2026-01-01T12:50:00Z"]
        assert (
            sample(
                connector,
                "cron_slots_skipped_total",
                function="report.openfaas-fn",
                reason="missed",
            )
            == 4
        )


async def test_an_invalid_schedule_is_counted_and_does_not_stop_the_others(
    gateway: FakeGateway,
) -> None:
    gateway.subscribe("broken", "cron-function", schedule="every minute please")
    gateway.subscribe(
        "elsewhere", "cron-function", schedule="* * * * *", schedule_timezone="Mars/Olympus"
    )
    gateway.subscribe("fine", "cron-function", schedule="* * * * *")
    for name in ("broken", "elsewhere", "fine"):
        gateway.function(name)
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    async with cron(gateway, clock) as connector:
        await clock.settle(1)
        await clock.advance_to(utc("2026-01-01T10:03:30"), idle=lambda: not connector.firer.tasks)
        await eventually(lambda: len(gateway.calls_to("fine")) == 3, 10, what="the good schedule")
        await asyncio.sleep(1.5)  # a topic-map rebuild later, each is still counted once
        assert gateway.calls_to("broken") == gateway.calls_to("elsewhere") == []
        for name in ("broken", "elsewhere"):
            assert (
                sample(connector, "cron_invalid_schedules_total", function=f"{name}.openfaas-fn")
                == 1
            )


async def test_forbid_holds_across_replicas_sharing_nats(
    gateway: FakeGateway, nats_server: NatsServer
) -> None:
    release = asyncio.Event()

    async def held(call: Call) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    gateway.subscribe("long", "cron-function", schedule="* * * * *")
    gateway.function("long", held)
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    env = {
        "nats_url": nats_server.url,
        "cron_kv_bucket": f"cron-{uuid.uuid4().hex[:8]}",
        # the busy mark expires when the call must be over; the fake clock outruns the call
        "upstream_timeout": "10m",
    }
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(cron(gateway, clock, **env)) for _ in range(2)]
        await clock.settle(2)
        await clock.advance_to(utc("2026-01-01T10:01:30"))
        await eventually(lambda: gateway.calls_to("long"), 10, what="the first call")
        await clock.advance_to(utc("2026-01-01T10:03:30"))

        def forbidden() -> float:
            return sum(
                sample(r, "cron_slots_skipped_total", function="long.openfaas-fn", reason="forbid")
                for r in replicas
            )

        # two slots, skipped by both replicas (the busy check is a NATS round trip: on a loaded
        # machine it may land just after the clock moved)
        await eventually(lambda: forbidden() == 4, 10, what="both slots skipped by both")
        assert len(gateway.calls_to("long")) == 1  # neither replica started another
        release.set()
        await eventually(lambda: not any(r.firer.tasks for r in replicas), 10, what="call done")
        await asyncio.sleep(0.2)  # the busy mark is cleared after the call
        await clock.advance_to(utc("2026-01-01T10:04:30"))
        await eventually(lambda: len(gateway.calls_to("long")) == 2, 10, what="the next slot")


class AsyncGateway:
    """Lists one cron function and accepts `/async-function/{name}` with 202, recording calls
    (the shared FakeGateway serves only synchronous `/function/{name}`)."""

    def __init__(self, schedule: str) -> None:
        self.schedule = schedule
        self.calls: list[tuple[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> AsyncGateway:
        app = web.Application()
        app.router.add_get("/system/namespaces", self._namespaces)
        app.router.add_get("/system/functions", self._functions)
        app.router.add_post("/async-function/{name}", self._accept)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def _namespaces(self, request: web.Request) -> web.Response:
        return web.json_response(["openfaas-fn"])

    async def _functions(self, request: web.Request) -> web.Response:
        annotations = {"topic": "cron-function", "schedule": self.schedule}
        return web.json_response(
            [{"name": "queued", "namespace": "openfaas-fn", "annotations": annotations}]
        )

    async def _accept(self, request: web.Request) -> web.Response:
        self.calls.append((request.match_info["name"], request.headers["X-Call-Id"]))
        return web.Response(status=202)


async def test_async_invocations_from_replicas_carry_one_call_id_per_slot(
    nats_server: NatsServer,
) -> None:
    gateway = await AsyncGateway("* * * * *").start()
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    env = {
        "nats_url": nats_server.url,
        "cron_kv_bucket": f"cron-{uuid.uuid4().hex[:8]}",
        "asynchronous_invocation": "true",
    }
    try:
        async with AsyncExitStack() as stack:
            replicas = [
                await stack.enter_async_context(cron(gateway, clock, **env))  # type: ignore[arg-type]
                for _ in range(2)
            ]
            await clock.settle(2)
            await clock.advance_to(
                utc("2026-01-01T10:10:30"), idle=lambda: not any(r.firer.tasks for r in replicas)
            )
            await eventually(lambda: len(gateway.calls) >= 10, 10, what="ten queued calls")
            await asyncio.sleep(0.2)
    finally:
        assert gateway.runner is not None
        await gateway.runner.cleanup()
    first = int(utc("2026-01-01T10:01").timestamp() * 1000)
    assert gateway.calls == [
        ("queued.openfaas-fn", f"queued.openfaas-fn:{first + 60_000 * i}") for i in range(10)
    ]

"""Several cron-connector replicas sharing a real nats-server fire each slot once, in-process
on one clock the test moves."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from datetime import timedelta

from aiohttp import web

from tests.support.brokers import NatsServer
from tests.support.clock import FakeClock
from tests.support.cron import cron, skipped, utc
from tests.support.http import FakeGateway, held_until
from tests.support.ports import eventually


async def test_two_replicas_sharing_nats_fire_each_slot_once(
    gateway: FakeGateway, nats_server: NatsServer
) -> None:
    gateway.subscribe("shared", "cron-function", schedule="* * * * *")
    gateway.function("shared")
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    env = {
        "nats_url": nats_server.url,
        "cron_kv_bucket": f"cron-{uuid.uuid4().hex[:8]}",
        # claims alone decide here (the calls are instant; `allow` keeps the busy mark out)
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
            return sum(skipped(r, "shared", "claimed_elsewhere") for r in (first, second))

        assert lost() == slots  # every slot was claimed by one replica and lost by the other


async def test_forbid_holds_across_replicas_sharing_nats(
    gateway: FakeGateway, nats_server: NatsServer
) -> None:
    release = asyncio.Event()

    gateway.subscribe("long", "cron-function", schedule="* * * * *")
    gateway.function("long", held_until(release))
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    # the busy lease is renewed in real time while the call runs, however far the test moves
    # the schedule's clock
    env = {"nats_url": nats_server.url, "cron_kv_bucket": f"cron-{uuid.uuid4().hex[:8]}"}
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(cron(gateway, clock, **env)) for _ in range(2)]
        await clock.settle(2)
        await clock.advance_to(utc("2026-01-01T10:01:30"))
        await eventually(lambda: gateway.calls_to("long"), 10, what="the first call")
        await clock.advance_to(utc("2026-01-01T10:03:30"))

        def forbidden() -> float:
            return sum(skipped(r, "long", "forbid") for r in replicas)

        def claimed_elsewhere() -> float:
            return sum(skipped(r, "long", "claimed_elsewhere") for r in replicas)

        # each of the two slots is skipped once, by the replica that claimed it; the other lost
        # the claim, as it lost the first slot's
        await eventually(lambda: forbidden() == 2, 10, what="both slots skipped")
        await eventually(lambda: claimed_elsewhere() == 3, 10, what="three claims lost")
        assert len(gateway.calls_to("long")) == 1  # neither replica started another
        release.set()
        # a call's task ends once its lease is released
        await eventually(lambda: not any(r.firer.tasks for r in replicas), 10, what="call done")
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

"""Fair mode's circuit breaker: a function that is down stops being pulled; its calls wait in
JetStream unattempted and all run once it is back, while other functions flow."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from prometheus_client import generate_latest

from asyncq.publisher import Publisher
from gateway.service import GatewayService
from queue_worker.worker import QueueWorker
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import Call, FakeGateway
from tests.support.ports import eventually, free_port
from tests.support.queue import QueueUnderTest

CALLS = 100


class FunctionServer:
    """A function on a fixed port that can be stopped (connection refused) and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: list[bytes] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.Response(text="ok")


def breaker_state(worker: QueueWorker, function: str) -> int | None:
    text = generate_latest(worker.registry).decode()
    found = re.search(
        rf'queue_worker_function_breaker_state\{{function_name="{function}"\}} (\d)', text
    )
    return int(found.group(1)) if found else None


def attempts_at_down(front: GatewayService) -> int:
    """What the gateway answered for `down` while its upstream refused connections."""
    return front.metrics.proxied.value("502")


@asynccontextmanager
async def outage_stack(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path, down: FunctionServer, **env: str
) -> AsyncIterator[tuple[GatewayService, QueueWorker]]:
    """A standalone gateway (function `down` at a port nobody listens on yet, `up` on the fake
    gateway) and a fair worker invoking through it."""
    functions = write_functions(
        tmp_path / "functions.yml",
        {
            "down": {"url": f"http://127.0.0.1:{down.port}"},
            "up": {"url": f"{gateway.url}/function/up"},
        },
    )
    env_front = gateway_env(queue, functions_file=str(functions))
    async with (
        running_gateway(env_front) as front,
        queue.worker(gateway_url=front.url, max_inflight="4", **env) as worker,
    ):
        yield front, worker


async def test_a_function_down_keeps_its_calls_queued_and_runs_them_all_once_it_is_back(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    gateway.function("up")
    down = FunctionServer()
    env = {"breaker_failures": "3", "breaker_open_for": "1s"}
    async with outage_stack(queue, gateway, tmp_path, down, **env) as (front, worker):
        publisher = Publisher(queue.js, queue.stream)
        assert await publisher.learn_layout()
        for i in range(CALLS):
            await queue.publish("down", body=b"%d" % i)
        await eventually(lambda: breaker_state(worker, "down") == 2, 10, what="breaker open")
        for i in range(20):  # another function flows while the breaker is open
            await queue.publish("up", body=b"%d" % i)
        await eventually(lambda: len(gateway.calls_to("up")) == 20, 10, what="20 calls of up")
        await eventually(lambda: attempts_at_down(front) >= 4, 10, what="a probe")  # still down
        during_outage = attempts_at_down(front)
        await down.start()
        try:
            await eventually(lambda: len(down.bodies) >= CALLS, 20, what="every call of down")
            await eventually(queue.drained, 10, what="the queue drained")
            state = breaker_state(worker, "down")
        finally:
            await down.stop()
    assert await queue.dead_letters() == []
    assert sorted(down.bodies) == sorted(b"%d" % i for i in range(CALLS))
    assert during_outage < 15, during_outage  # the 3 that opened it, in-flight ones, probes
    assert attempts_at_down(front) == during_outage  # none failed after recovery
    assert state == 0


async def test_a_functions_own_500s_do_not_open_its_breaker(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    async def failing(call: Call) -> web.Response:
        return web.Response(status=500, text="bad input")

    gateway.function("buggy", failing)
    async with queue.worker(
        max_inflight="4", breaker_failures="2", max_retry_attempts="3"
    ) as worker:
        for i in range(5):
            await queue.publish("buggy", body=b"%d" % i)
        await eventually(
            lambda: len(gateway.calls_to("buggy")) == 15, 10, what="every attempt made"
        )
        await eventually(queue.drained, 10, what="all dead-lettered")
        state = breaker_state(worker, "buggy")
    assert len(await queue.dead_letters()) == 5  # retried and dead-lettered as before
    assert state == 0

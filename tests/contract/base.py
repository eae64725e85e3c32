"""The guarantees every event source keeps, written once and run against each real broker.

A source's contract module subclasses `SourceContract` and provides a `harness` fixture
(a `SourceHarness` bound to its broker). The function under test is `fn` on the test gateway,
subscribed to the harness's topic.
"""

from __future__ import annotations

import abc
import asyncio

from aiohttp import web

from tests.support.http import Call, FakeGateway, held_until
from tests.support.ports import eventually
from tests.support.procs import FerryProcess

FUNCTION = "fn"
# How long to give a source that acknowledges on a timer the chance to do it too early.
SETTLE_SECONDS = 1.0


class SourceHarness(abc.ABC):
    """One broker plus the ferry process that consumes it."""

    topic: str = "contract"

    def __init__(self, gateway: FakeGateway) -> None:
        self.gateway = gateway
        self.processes: list[FerryProcess] = []

    @abc.abstractmethod
    async def send(self, body: bytes) -> None:
        """Put one event on the source."""

    @abc.abstractmethod
    def process(self, **env: str) -> FerryProcess:
        """The (not yet started) ferry process for this source, with `env` overrides."""

    @abc.abstractmethod
    async def unfinished(self) -> int:
        """Events the source still holds: not yet acknowledged, committed or deleted."""

    @abc.abstractmethod
    async def dead_letters(self) -> list[bytes]:
        """Bodies of the events recorded as dead."""

    def base_env(self) -> dict[str, str]:
        return {
            "gateway_url": self.gateway.url,
            "health_port": "0",
            "health_host": "127.0.0.1",
            "initial_retry_wait": "20ms",
            "max_retry_wait": "100ms",
            "max_retry_attempts": "5",
            "rebuild_interval": "1s",
            "graceful_timeout": "15s",
            "callback_allow_private": "true",
        }

    async def start(self, **env: str) -> FerryProcess:
        proc = await self.process(**env).start()
        self.processes.append(proc)
        return proc

    async def close(self) -> None:
        for proc in self.processes:
            await proc.close()


def bodies_seen(gateway: FakeGateway) -> set[bytes]:
    return {c.body for c in gateway.calls_to(FUNCTION)}


class SourceContract:
    """Subclass per source; needs fixtures `harness` and `gateway`."""

    async def test_every_event_is_invoked_at_least_once(
        self, harness: SourceHarness, gateway: FakeGateway
    ) -> None:
        gateway.function(FUNCTION)
        bodies = {f"event-{i}".encode() for i in range(20)}
        for body in sorted(bodies):
            await harness.send(body)
        proc = await harness.start()
        await eventually(lambda: bodies_seen(gateway) >= bodies, 60, what="every event")
        await eventually(lambda: _is_zero(harness), 30, what="nothing unfinished")
        assert await proc.stop() == 0, proc.output()

    async def test_acknowledges_only_after_the_outcome(
        self, harness: SourceHarness, gateway: FakeGateway
    ) -> None:
        """While the call runs the event stays unfinished, and a crash at that moment (SIGKILL)
        loses nothing: the restarted process runs the call again and then finishes the event.
        The later steps a source takes before it acknowledges (the queue worker's dead letter
        and callback) are held the same way in that source's own contract module."""
        release = asyncio.Event()

        gateway.function(FUNCTION, held_until(release))
        await harness.send(b"held")
        first = await harness.start()
        await eventually(lambda: gateway.calls_to(FUNCTION), 60, what="the call to start")
        await asyncio.sleep(SETTLE_SECONDS)  # a source that commits on a timer has done so
        assert await harness.unfinished() == 1
        await first.kill()
        release.set()
        second = await harness.start()
        await eventually(
            lambda: len(gateway.calls_to(FUNCTION)) >= 2, 60, what="the call to run again"
        )
        await eventually(lambda: _is_zero(harness), 30, what="acknowledged after the outcome")
        assert await second.stop() == 0, second.output()

    async def test_retry_then_success(self, harness: SourceHarness, gateway: FakeGateway) -> None:
        statuses = iter([503, 503])

        async def flaky(call: Call) -> web.Response:
            return web.Response(status=next(statuses, 200), text="answer")

        gateway.function(FUNCTION, flaky)
        await harness.send(b"flaky")
        proc = await harness.start()
        await eventually(
            lambda: _is_zero(harness) if len(gateway.calls_to(FUNCTION)) >= 3 else False,
            60,
            what="three attempts then acknowledged",
        )
        assert len(gateway.calls_to(FUNCTION)) == 3
        assert await harness.dead_letters() == []
        assert await proc.stop() == 0, proc.output()

    async def test_exhausted_retries_are_dead_lettered(
        self, harness: SourceHarness, gateway: FakeGateway
    ) -> None:
        gateway.function(FUNCTION, lambda call: web.Response(status=500, text="broken"))
        await harness.send(b"doomed")
        proc = await harness.start(max_retry_attempts="3")
        await eventually(harness.dead_letters, 60, what="a dead letter")
        assert await harness.dead_letters() == [b"doomed"]
        assert len(gateway.calls_to(FUNCTION)) == 3
        await eventually(lambda: _is_zero(harness), 30, what="the dead event acknowledged")
        assert await proc.stop() == 0, proc.output()

    async def test_graceful_drain_finishes_in_flight_work(
        self, harness: SourceHarness, gateway: FakeGateway
    ) -> None:
        finished: list[bytes] = []

        async def slow(call: Call) -> web.Response:
            await asyncio.sleep(1.5)
            finished.append(call.body)
            return web.Response(text="slow")

        gateway.function(FUNCTION, slow)
        await harness.send(b"in-flight")
        proc = await harness.start()
        await eventually(lambda: gateway.calls_to(FUNCTION), 60, what="the call to start")
        assert await proc.stop() == 0, proc.output()
        assert finished == [b"in-flight"]
        assert len(gateway.calls_to(FUNCTION)) == 1
        assert await harness.unfinished() == 0

    async def test_restart_after_a_crash_loses_nothing(
        self, harness: SourceHarness, gateway: FakeGateway
    ) -> None:
        async def steady(call: Call) -> web.Response:
            await asyncio.sleep(0.05)
            return web.Response(text="ok")

        gateway.function(FUNCTION, steady)
        bodies = {f"crash-{i}".encode() for i in range(30)}
        for body in sorted(bodies):
            await harness.send(body)
        first = await harness.start(max_inflight="2")
        await eventually(lambda: len(gateway.calls_to(FUNCTION)) >= 5, 60, what="some progress")
        await first.kill()
        second = await harness.start(max_inflight="4")
        await eventually(
            lambda: bodies_seen(gateway) >= bodies, 90, what="every event after restart"
        )
        await eventually(lambda: _is_zero(harness), 30, what="nothing unfinished")
        assert await second.stop() == 0, second.output()


async def _is_zero(harness: SourceHarness) -> bool:
    return await harness.unfinished() == 0

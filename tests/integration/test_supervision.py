"""A long-lived task that dies is never silent: the service's run() raises, the process is
unhealthy at once and exits 1."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from connectors.core.config import RuntimeSettings
from connectors.core.runner import EXIT_CRASH, EXIT_OK, serve
from connectors.core.supervision import TaskDied, raise_if_ended, until_stopped
from tests.support.ports import free_port


async def _fails_soon() -> None:
    await asyncio.sleep(0.01)
    raise ValueError("annotations is a list")


async def test_a_task_that_dies_before_the_stop_is_reported_with_its_cause() -> None:
    stopping = asyncio.Event()
    task = asyncio.create_task(_fails_soon(), name="topic-map")
    with pytest.raises(TaskDied, match="topic-map died: ValueError") as caught:
        await until_stopped(stopping, [task])
    assert isinstance(caught.value.__cause__, ValueError)


async def test_a_task_that_returns_before_the_stop_is_a_crash_too() -> None:
    task = asyncio.create_task(asyncio.sleep(0), name="poller")
    with pytest.raises(TaskDied, match="poller returned"):
        await until_stopped(asyncio.Event(), [task])


async def test_tasks_that_end_because_of_the_stop_are_not_a_crash() -> None:
    stopping = asyncio.Event()

    async def loop_until_stopped() -> None:
        await stopping.wait()

    task = asyncio.create_task(loop_until_stopped())
    asyncio.get_running_loop().call_later(0.05, stopping.set)
    await until_stopped(stopping, [task])
    await task


class _ServiceWithAHelper:
    """A real service: `run` waits for its stop while a helper task does background work;
    `drain` reads the process's own /healthz, as a liveness probe would."""

    name = "helper-service"

    def __init__(self, helper: asyncio.Future[None], health_port: int) -> None:
        self.registry = CollectorRegistry()
        self.helper = helper
        self.health_port = health_port
        self.health_during_drain: int | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pass

    async def run(self) -> None:
        self._task = asyncio.create_task(self._helper(), name="background")
        try:
            await until_stopped(self._stopping, [self._task])
        finally:
            self._task.cancel()

    async def _helper(self) -> None:
        await self.helper

    def stop(self) -> None:
        self._stopping.set()

    async def drain(self, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            self.health_during_drain = response.status

    def ready(self) -> bool:
        return not self._stopping.is_set()


def _runtime(port: int) -> RuntimeSettings:
    return RuntimeSettings(health_port=port, health_host="127.0.0.1", graceful_timeout=1.0)


async def test_a_dead_background_task_makes_the_process_unhealthy_and_exit_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    helper: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    service = _ServiceWithAHelper(helper, port)
    helper.set_exception(RuntimeError("refresh blew up"))
    status = await serve(service, _runtime(port), handle_signals=False)
    assert status == EXIT_CRASH
    assert service.health_during_drain == 503
    assert "background died: RuntimeError: refresh blew up" in caplog.text


async def test_a_clean_stop_leaves_the_process_healthy_and_exits_0() -> None:
    port = free_port()
    helper: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    service = _ServiceWithAHelper(helper, port)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    status = await serve(service, _runtime(port), handle_signals=False, stop_event=stop)
    assert status == EXIT_OK
    assert service.health_during_drain == 200


async def test_a_loop_that_wakes_on_its_own_sees_a_dead_helper() -> None:
    alive = asyncio.create_task(asyncio.sleep(60), name="alive")
    dead = asyncio.create_task(_fails_soon(), name="pending-gauges")
    try:
        await asyncio.gather(dead, return_exceptions=True)
        with pytest.raises(TaskDied, match="pending-gauges died: ValueError"):
            raise_if_ended([alive, dead])
        raise_if_ended([alive])
    finally:
        alive.cancel()

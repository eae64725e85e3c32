"""The runner's life cycle: a stop during start-up is a clean exit, and a process that runs one
service sets the garbage collector up for it once started (a service run beside others, as in
the tests or `ferry dev`, leaves the collector alone)."""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import sys
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from connectors.core import runner
from connectors.core.config import RuntimeSettings
from connectors.core.runner import EXIT_CRASH, EXIT_OK, GEN0_THRESHOLD, serve
from tests.support.brokers import test_environ
from tests.support.ports import eventually
from tests.support.procs import FerryProcess


class _Observer:
    """Records the collector's state while it runs."""

    name = "observer"

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.seen: tuple[int, int] | None = None
        self.stop_event = asyncio.Event()

    async def start(self) -> None:
        self.made_at_start = [object() for _ in range(10)]  # start-up's own objects

    async def run(self) -> None:
        self.seen = (gc.get_threshold()[0], gc.get_freeze_count())
        await self.stop_event.wait()

    def stop(self) -> None:
        self.stop_event.set()

    async def drain(self, timeout: float) -> None:
        pass

    def ready(self) -> bool:
        return True


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector as it was, put back after the test (this process runs more tests)."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


async def _serve(whole_process: bool) -> _Observer:
    service = _Observer()
    runtime = RuntimeSettings(health_host="127.0.0.1", health_port=0)
    signal = asyncio.Event()  # what SIGTERM would set
    asyncio.get_running_loop().call_later(0.2, signal.set)
    status = await serve(
        service, runtime, handle_signals=False, stop_event=signal, whole_process=whole_process
    )
    assert status == EXIT_OK
    return service


@pytest.mark.usefixtures("collector")
async def test_a_whole_process_freezes_start_up_and_collects_less_often() -> None:
    gc.unfreeze()
    service = await _serve(whole_process=True)
    assert service.seen is not None
    threshold, frozen = service.seen
    assert threshold == GEN0_THRESHOLD
    assert frozen > 0


@pytest.mark.usefixtures("collector")
async def test_a_service_beside_others_leaves_the_collector_alone() -> None:
    gc.unfreeze()
    before = gc.get_threshold()[0]
    service = await _serve(whole_process=False)
    assert service.seen == (before, 0)


class _SlowToStart(_Observer):
    """Its start-up waits for a dependency that never comes."""

    name = "slow-to-start"

    def __init__(self) -> None:
        super().__init__()
        self.start_cancelled = False
        self.ran = False

    async def start(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.start_cancelled = True
            raise

    async def run(self) -> None:
        self.ran = True
        await super().run()


async def test_a_stop_during_start_up_cuts_it_short_and_is_a_clean_exit() -> None:
    service = _SlowToStart()
    signal = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, signal.set)
    runtime = RuntimeSettings(health_host="127.0.0.1", health_port=0)
    status = await asyncio.wait_for(
        serve(service, runtime, handle_signals=False, stop_event=signal), 5
    )
    assert status == EXIT_OK
    assert service.start_cancelled
    assert not service.ran


async def test_sigterm_while_a_process_waits_for_nats_at_start_up_exits_0() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # nothing listens: the worker keeps trying to connect
    env = {
        "nats_url": f"nats://127.0.0.1:{closed.getsockname()[1]}",
        "nats_connect_timeout": "60s",
        "health_port": "0",
        "health_host": "127.0.0.1",
        "write_debug": "true",  # for the line that says the signals are handled
    }
    proc = await FerryProcess("queue-worker", env).start()
    try:
        await eventually(lambda: "queue-worker starting" in proc.output(), 20, what="start-up")
        assert await proc.stop(timeout=10) == 0, proc.output()
        assert "queue-worker stopped during start-up" in proc.output()
    finally:
        await proc.close()
        closed.close()


# A service whose run() leaves behind a task that swallows every cancellation, as a library
# can: the process must still exit 0 soon after SIGTERM (asyncio.run waits for such a task
# for ever).
STUBBORN_SERVICE = """
import asyncio
from dataclasses import dataclass
from prometheus_client import CollectorRegistry
from connectors.core.config import RuntimeSettings
from connectors.core.runner import run_from_env
from connectors.core.settings import group

@dataclass(frozen=True)
class Config:
    runtime: RuntimeSettings = group(RuntimeSettings)

async def stubborn():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass

class Stubborn:
    name = "stubborn"
    def __init__(self, config):
        self.registry = CollectorRegistry()
        self.stopping = asyncio.Event()
    async def start(self):
        pass
    async def run(self):
        asyncio.create_task(stubborn(), name="stubborn-task")
        print("running", flush=True)
        await self.stopping.wait()
    def stop(self):
        self.stopping.set()
    async def drain(self, timeout):
        pass
    def ready(self):
        return True

raise SystemExit(run_from_env(Config, Stubborn, lambda c: c.runtime))
"""


async def test_a_task_that_swallows_its_cancellation_does_not_keep_the_process_alive() -> None:
    env = test_environ(health_port="0", health_host="127.0.0.1")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        STUBBORN_SERVICE,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"running\n"
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    said = (await process.stderr.read()).decode()
    assert code == 0, said
    assert "left behind: stubborn-task" in said


class _StuckDrain(_Observer):
    """A service whose drain does not end, whatever it is told (a part that lost its cancel),
    until the test lets it."""

    name = "stuck"

    def __init__(self) -> None:
        super().__init__()
        self.released = False
        self.cancels = 0

    async def drain(self, timeout: float) -> None:
        while not self.released:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancels += 1


async def test_a_drain_that_never_ends_is_left_after_its_margin_and_the_exit_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runner, "DRAIN_MARGIN", 0.3)
    monkeypatch.setattr(runner, "LEFTOVER_WAIT", 0.1)
    service = _StuckDrain()
    runtime = RuntimeSettings(health_host="127.0.0.1", health_port=0, graceful_timeout=0.2)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    # a serve() that waits for the drain for ever (the old runner) fails here, not hangs: the
    # drain lets go after 5 s, and the cancel of wait_for's 10 s then ends it
    asyncio.get_running_loop().call_later(5, setattr, service, "released", True)
    try:
        status = await asyncio.wait_for(
            serve(service, runtime, handle_signals=False, stop_event=stop), 10
        )
        left = [t for t in asyncio.all_tasks() if t.get_name() == "stuck-drain"]
    finally:
        service.released = True  # the drain left behind may end now
    assert status == EXIT_CRASH
    assert "stuck: its drain did not end 0.3s after graceful_timeout" in caplog.text
    assert service.cancels == 1  # told to end once, then left
    assert len(left) == 1
    left[0].cancel()
    await asyncio.gather(*left, return_exceptions=True)

"""Runs one long-lived service as a process: start-up, health server, signals, graceful drain.

Exit status: 0 after a clean stop (SIGTERM/SIGINT), 2 for bad configuration or a dependency
unreachable at start-up (one line on stderr, no traceback), 1 if the service crashed: its
`run()` raised, for example because one of its long-lived tasks died (`supervision.py`). From
that moment `/healthz` answers 503 while the service drains.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry

from connectors.core import tracing
from connectors.core.config import RuntimeSettings
from connectors.core.drain import finish_or_cancel
from connectors.core.errors import ConfigError, FerryError, StartupError
from connectors.core.health import HealthServer
from connectors.core.logs import configure_logging, escape_controls
from connectors.core.openfaas_settings import unread_names, warning_line
from connectors.core.settings import load_settings
from connectors.core.supervision import unless_set

log = logging.getLogger(__name__)

GEN0_THRESHOLD = 10_000  # see settle_collector
LEFTOVER_WAIT = 1.0  # see run_to_end
DRAIN_MARGIN = 15.0  # a drain still going this long after graceful_timeout is stuck

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_CONFIG = 2

C = TypeVar("C")


class Service(Protocol):
    """What the runner needs of a worker or connector."""

    name: str
    registry: CollectorRegistry

    async def start(self) -> None:
        """Connect to dependencies; raise StartupError or ConfigError if that fails."""

    async def run(self) -> None:
        """Take and process work until `stop` is called."""

    def stop(self) -> None:
        """Stop taking new work (must not block)."""

    async def drain(self, timeout: float) -> None:
        """Finish in-flight work within `timeout`, hand the rest back, release resources."""

    def ready(self) -> bool:
        """Whether the service can take work now (for /readyz)."""


def fail(message: str, status: int = EXIT_CONFIG) -> int:
    """One line on stderr, control characters escaped (messages quote input); the status."""
    print(f"ferry: {escape_controls(message)}", file=sys.stderr)
    return status


SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(
    service: Service,
    runtime: RuntimeSettings,
    *,
    handle_signals: bool = True,
    stop_event: asyncio.Event | None = None,
    whole_process: bool = False,
) -> int:
    """Run `service` until a signal (or `stop_event`) and return the process exit status.

    The signals are handled from the first moment: one that arrives during start-up cuts the
    start-up short and the process exits 0 (nothing was taken yet), instead of dying of it.
    `whole_process`: the service is all this process runs, so the garbage collector is set up
    for it once it has started (`settle_collector`)."""
    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in SIGNALS:
            loop.add_signal_handler(sig, stop_event.set)
    log.debug("%s starting", service.name)  # signals handled from here on
    try:
        try:
            started = await _start_unless_stopped(service, stop_event)
        except (ConfigError, StartupError) as exc:
            return fail(str(exc))
        if not started:
            log.info("%s stopped during start-up", service.name)
            return EXIT_OK
        if whole_process:
            settle_collector()
        return await _run_until_stopped(service, runtime, stop_event)
    finally:
        if handle_signals:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)


async def _start_unless_stopped(service: Service, stop_event: asyncio.Event) -> bool:
    """Start `service`; False if the stop came first (its start-up is then cancelled)."""
    if stop_event.is_set():
        return False
    starting = await unless_set(stop_event, service.start())
    if starting.cancelled():
        return False
    starting.result()  # its ConfigError or StartupError, if it failed
    return True


async def _run_until_stopped(
    service: Service, runtime: RuntimeSettings, stop_event: asyncio.Event
) -> int:
    crashed = asyncio.Event()
    health = HealthServer(
        service.registry,
        service.ready,
        host=runtime.health_host,
        port=runtime.health_port,
        healthy=lambda: not crashed.is_set(),
    )
    try:
        port = await health.start()
    except OSError as exc:
        await service.drain(0)
        return fail(f"health_port={runtime.health_port}: cannot listen: {exc.strerror or exc}")
    log.info("%s started; health and metrics on port %d", service.name, port)

    worker = asyncio.create_task(service.run(), name=f"{service.name}-run")
    stopper = asyncio.create_task(stop_event.wait())
    await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
    status = EXIT_OK
    if worker.done() and not stopper.done():
        crash = worker.exception()
        crashed.set()  # /healthz answers 503 from now on
        if isinstance(crash, FerryError):  # a failure ferry diagnosed: its one line says why
            log.error("%s stopped: %s", service.name, crash, exc_info=crash.__cause__)
        elif crash is not None:
            log.error("%s stopped unexpectedly", service.name, exc_info=crash)
        else:
            log.error("%s stopped unexpectedly: its run() returned", service.name)
        status = EXIT_CRASH
    stopper.cancel()
    log.info("%s stopping: draining for up to %gs", service.name, runtime.graceful_timeout)
    service.stop()
    try:
        if not await _drained(service, runtime.graceful_timeout):
            status = EXIT_CRASH
    finally:
        if not worker.done():
            worker.cancel()
            await asyncio.wait({worker}, timeout=LEFTOVER_WAIT)  # it may not end when told
        if worker.done() and not worker.cancelled():
            worker.exception()  # reported above if it was a crash
        await health.stop()
    log.info("%s stopped", service.name)
    return status


async def _drained(service: Service, timeout: float) -> bool:
    """Drain `service`; False if the drain was still going `DRAIN_MARGIN` seconds after its
    `timeout` (a part that never ends; then cancelled and left, so the process still exits and
    what it did not hand back comes back to the broker after its ack wait or visibility
    timeout). A drain's own exception is raised as before."""
    draining = asyncio.create_task(service.drain(timeout), name=f"{service.name}-drain")
    if await finish_or_cancel([draining], timeout + DRAIN_MARGIN, cancel_wait=LEFTOVER_WAIT):
        log.error(
            "%s: its drain did not end %gs after graceful_timeout; exiting without it",
            service.name,
            DRAIN_MARGIN,
        )
        return False
    draining.result()
    return True


def run_from_env(
    config_cls: type[C],
    build: Callable[[C], Service],
    runtime: Callable[[C], RuntimeSettings],
    environ: Mapping[str, str] | None = None,
    ignored_flags: Sequence[str] = (),
) -> int:
    """Load `config_cls` from the environment, build the service and run it to the end.

    OpenFaaS settings in the environment that ferry does not read, and `ignored_flags` (OpenFaaS
    command-line flags accepted but unused), are named in one warning line.
    """
    env = os.environ if environ is None else environ
    try:
        config = load_settings(config_cls, env)
        settings = runtime(config)
        configure_logging(settings.log_encoding, settings.write_debug)
        if line := warning_line([*unread_names(config_cls, env), *ignored_flags]):
            log.warning(line)
        tracing.configure(env)  # before `build`: hooks may be chosen when a part is made
        service = build(config)
        tracing.start(f"ferry-{service.name}", env)
    except ConfigError as exc:
        return fail(str(exc))
    try:
        return run_to_end(serve(service, settings, whole_process=True), event_loop_factory())
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        tracing.stop()


def run_to_end(
    main: Coroutine[Any, Any, int],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> int:
    """`asyncio.run(main)`, except that the tasks still running when `main` returns get
    `LEFTOVER_WAIT` seconds to end once cancelled and are then left behind. `asyncio.run`
    waits for them without a bound, so one that swallows its cancellation (a library that
    catches `CancelledError`) would keep a process that has finished its drain alive."""
    loop = (loop_factory or asyncio.new_event_loop)()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            if leftovers := asyncio.all_tasks(loop):
                loop.run_until_complete(_cancel_leftovers(leftovers))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _cancel_leftovers(tasks: set[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    ended, stuck = await asyncio.wait(tasks, timeout=LEFTOVER_WAIT)
    for task in ended:
        if not task.cancelled():
            task.exception()  # too late to matter: retrieved so it is not reported at exit
    if stuck:
        names = ", ".join(sorted(task.get_name() for task in stuck)[:5])
        log.warning(
            "%d tasks did not end when cancelled at exit, left behind: %s", len(stuck), names
        )


def settle_collector() -> None:
    """Once start-up is done: what it made (modules, settings, clients) is frozen out of the
    cyclic garbage collector's sight, so full collections no longer walk it, and the youngest
    generation is collected after `GEN0_THRESHOLD` net allocations instead of 700. A busy
    connector spent about 1.6 µs of CPU a message in the collector, half of it in full
    collections re-walking start-up objects (bench/README.md, "Kafka connector")."""
    gc.collect()  # garbage made during start-up is not frozen with the rest
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (it roughly doubles what one process can push)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop

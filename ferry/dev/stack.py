"""Wires the local stack: embedded NATS, example functions, the gateway, a worker, a receiver.

Each long-lived part is a runner `Service` run by `serve()` in this one process, so it behaves
as it would in its own container. `OPTIONAL_SERVICES` is where a part that may be absent (such
as the cron connector) plugs in: a factory that gets the stack's endpoints and returns a service
and its runtime settings, or None when it is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from connectors.core.config import RuntimeSettings
from connectors.core.runner import EXIT_OK, Service, serve
from connectors.core.settings import load_settings
from ferry.console_mount import mount_console
from ferry.dev.callback_printer import CallbackPrinter
from ferry.dev.embedded_nats import EmbeddedNats
from ferry.dev.examples import example_app, example_functions
from ferry.dev.loopback import LoopbackSite
from gateway.config import GatewayConfig
from gateway.service import GatewayService
from queue_worker.config import QueueWorkerConfig
from queue_worker.worker import QueueWorker

LOOPBACK_CALLBACKS = "127.0.0.1,localhost,::1"


@dataclass(frozen=True)
class DevEndpoints:
    nats_url: str
    gateway_url: str
    callback_url: str
    data_dir: Path


ServiceFactory = Callable[[DevEndpoints], tuple[Service, RuntimeSettings] | None]


def cron_connector(endpoints: DevEndpoints) -> tuple[Service, RuntimeSettings] | None:
    """The cron connector, firing `tick` every minute through the queue (if croniter is here)."""
    try:
        from connectors.cron.config import CronConnectorConfig
        from connectors.cron.connector import CronConnector
    except ImportError:
        return None
    env = {
        **_runtime_env(),
        "gateway_url": endpoints.gateway_url,
        "nats_url": endpoints.nats_url,
        "asynchronous_invocation": "true",
        "callback_url": endpoints.callback_url,
        "rebuild_interval": "2s",
    }
    config = load_settings(CronConnectorConfig, env)
    return CronConnector(config), config.runtime


OPTIONAL_SERVICES: list[ServiceFactory] = [cron_connector]


@dataclass(frozen=True)
class DevOptions:
    port: int = 8080
    nats_port: int = 0
    data: str = ""


def _runtime_env() -> dict[str, str]:
    return {"health_port": "0", "health_host": "127.0.0.1", "graceful_timeout": "5s"}


def gateway_config(nats_url: str, port: int, functions_file: Path) -> GatewayConfig:
    env = {
        **_runtime_env(),
        "nats_url": nats_url,
        "port": str(port),
        "listen_host": "127.0.0.1",
        "functions_file": str(functions_file),
        "callback_allowed_hosts": LOOPBACK_CALLBACKS,
        "refresh_interval": "1s",
        "console_enabled": "true",  # bound to 127.0.0.1: this machine's user only
    }
    return load_settings(GatewayConfig, env)


def worker_config(nats_url: str, gateway_url: str) -> QueueWorkerConfig:
    """Short retry waits so a retry shows within seconds; loopback callbacks allowed."""
    env = {
        **_runtime_env(),
        "nats_url": nats_url,
        "gateway_url": gateway_url,
        "max_inflight": "8",
        "initial_retry_wait": "500ms",
        "max_retry_wait": "2s",
        "max_retry_attempts": "5",
        "callback_allowed_hosts": LOOPBACK_CALLBACKS,
        "callback_max_wait": "2s",
        "print_response_body": "true",
    }
    return load_settings(QueueWorkerConfig, env)


class DevStack:
    def __init__(
        self,
        options: DevOptions,
        emit: Callable[[str], None],
        optional: Sequence[ServiceFactory] = (),
    ) -> None:
        self.options = options
        self.emit = emit
        self.optional = list(OPTIONAL_SERVICES) + list(optional)
        self.stop_event = asyncio.Event()
        self._temp = not options.data
        self.data_dir = Path(options.data or tempfile.mkdtemp(prefix="ferry-dev-"))
        self._sites: list[LoopbackSite] = []
        self._nats: EmbeddedNats | None = None

    async def run(self, handle_signals: bool = True) -> int:
        """Start everything, print how to use it, run until a signal; return the exit status."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop_event.set)
        try:
            return await self._run()
        finally:
            await self._cleanup()
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    async def _run(self) -> int:
        self._nats = await EmbeddedNats(self.data_dir / "jetstream", self.options.nats_port).start()
        functions = await self._site(LoopbackSite(example_app()))
        receiver = await self._site(LoopbackSite(CallbackPrinter(self.emit).app()))
        functions_file = self.data_dir / "functions.yml"
        functions_file.write_text(yaml.safe_dump(example_functions(functions.url), sort_keys=False))

        gateway = GatewayService(gateway_config(self._nats.url, self.options.port, functions_file))
        mount_console(gateway)
        tasks = [self._serve(gateway, gateway.config.runtime)]
        if not await self._until_ready(gateway, tasks[0]):
            return await self._finish(tasks)
        endpoints = DevEndpoints(
            self._nats.url, gateway.url, f"{receiver.url}/callback", self.data_dir
        )
        worker = QueueWorker(worker_config(self._nats.url, gateway.url))
        tasks.append(self._serve(worker, worker.config.runtime))
        for factory in self.optional:
            built = factory(endpoints)
            if built is not None:
                tasks.append(self._serve(*built))
        if not await self._until_ready(worker, tasks[1]):
            return await self._finish(tasks)
        self.emit(banner(endpoints, functions_file))
        await self._wait_for_stop(tasks)
        return await self._finish(tasks)

    async def _site(self, site: LoopbackSite) -> LoopbackSite:
        self._sites.append(site)
        return await site.start()

    def _serve(self, service: Service, runtime: RuntimeSettings) -> asyncio.Task[int]:
        return asyncio.create_task(
            serve(service, runtime, handle_signals=False, stop_event=self.stop_event),
            name=f"dev-{service.name}",
        )

    async def _until_ready(self, service: Service, task: asyncio.Task[int]) -> bool:
        while not service.ready():
            if task.done() or self.stop_event.is_set():
                return False
            await asyncio.sleep(0.05)
        return True

    async def _wait_for_stop(self, tasks: list[asyncio.Task[int]]) -> None:
        stopper = asyncio.create_task(self.stop_event.wait())
        await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()

    async def _finish(self, tasks: list[asyncio.Task[int]]) -> int:
        self.stop_event.set()
        statuses = await asyncio.gather(*tasks)
        failed = [s for s in statuses if s != EXIT_OK]
        return failed[0] if failed else EXIT_OK

    async def _cleanup(self) -> None:
        for site in reversed(self._sites):
            await site.stop()
        if self._nats is not None:
            await self._nats.stop()
        if self._temp:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.data_dir, ignore_errors=True)


def banner(endpoints: DevEndpoints, functions_file: Path) -> str:
    gw, cb = endpoints.gateway_url, endpoints.callback_url
    return f"""
ferry dev is running. Ctrl-C stops everything.

  gateway    {gw}  (POST /async-function/NAME queues, /function/NAME calls now)
  functions  echo, slow (?seconds=N), flaky (fails twice, then succeeds),
             tick (called by the cron connector every minute)  from {functions_file}
  nats       {endpoints.nats_url}  (JetStream data in {endpoints.data_dir})
  callbacks  {cb}  (every hit is printed below)
  console    {gw}/system/console/  (calls, dead letters, schedules in a browser)

An async call with a callback (202 now, the callback a moment later):

  curl -i {gw}/async-function/echo -H 'X-Callback-Url: {cb}' -d 'hello ferry'

One that is retried twice before it succeeds:

  curl -i {gw}/async-function/flaky -H 'X-Callback-Url: {cb}' -d 'try again'

ready: {gw}
""".lstrip("\n")

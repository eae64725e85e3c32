"""`ferry console` as a runner `Service`: a NATS connection and the console on its own port,
for installs that keep OpenFaaS's gateway. It only reads what the other processes made (no
stream, bucket or consumer is created here) and changes things only through its forms."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry

from connectors.core.errors import FerryError, StartupError
from connectors.core.function_entries import FunctionInfo
from connectors.core.gateway import GatewayClient, read_basic_auth
from connectors.core.topicmap import TopicMapRefresher
from connectors.jetstream.connect import NatsConnection, connect
from connectors.jetstream.credentials import check_files
from console.app import PREFIX, console_app, mount
from console.config import ConsoleConfig
from console.data import ConsoleData
from ledger.bucket import bucket_handle

log = logging.getLogger("ferry.console")

FUNCTIONS_KEPT_SECONDS = 30.0


class GatewayFunctions:
    """The gateway's function list, read at most every 30 s; the last good one on failure."""

    def __init__(self, client: GatewayClient) -> None:
        self.lister = TopicMapRefresher(client, interval=0)
        self._kept: tuple[float, Sequence[FunctionInfo]] = (0.0, ())

    async def __call__(self) -> Sequence[FunctionInfo]:
        read_at, functions = self._kept
        if time.monotonic() - read_at >= FUNCTIONS_KEPT_SECONDS:
            try:
                functions = await self.lister.list_functions()
            except FerryError as exc:
                log.warning("console: cannot read the function list: %s", exc)
            self._kept = (time.monotonic(), functions)
        return functions


class ConsoleService:
    name = "console"

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        # read now, so a bad secret is the one line at start-up
        self._authorization = (
            read_basic_auth(config.gateway.secret_mount_path) if config.gateway.basic_auth else None
        )
        self.client = GatewayClient(config.gateway, max_inflight=4)
        self._nats: NatsConnection | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._stopping = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    async def start(self) -> None:
        check_files(self.config.nats)
        nats = self.config.nats
        self._nats = await connect(nats, name="ferry-console")
        js = self._nats.client.jetstream()
        ledger = self.config.ledger
        data = ConsoleData(
            js,
            stream=nats.nats_stream,
            dead_letter_stream=nats.dead_letter_stream,
            ledger=bucket_handle(js, ledger.call_ledger_bucket) if ledger.call_ledger else None,
            ledger_bucket=ledger.call_ledger_bucket,
            functions=GatewayFunctions(self.client),
            claims_bucket=self.config.cron_kv_bucket,
            body_bucket=nats.large_body_bucket,
            function_state_bucket=nats.function_state_bucket,
            replicas=nats.nats_stream_replicas,
            delayed_stream=nats.delayed_stream,
        )
        root = web.Application()
        mount(root, console_app(data, authorization=self._authorization))
        root.router.add_get("/", _to_console)
        self._runner = web.AppRunner(root, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.listen_host, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"port={self.config.port}: cannot listen: {exc.strerror}") from None
        self.port = _bound_port(self._runner) or self.config.port
        log.info("console on port %d%s", self.port, PREFIX)

    def ready(self) -> bool:
        return self._runner is not None and self._nats is not None and self._nats.connected

    async def run(self) -> None:
        assert self._nats is not None
        await self._nats.while_open(self._stopping.wait())

    def stop(self) -> None:
        self._stopping.set()

    async def drain(self, timeout: float) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.client.close()
        if self._nats is not None:
            await self._nats.close()


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(PREFIX)


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return 0

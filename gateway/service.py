"""`ferry gateway` as a runner `Service`: NATS connection, function list, one listening port.

The port is `FastListener`'s: it serves async calls itself and hands every other connection to
the aiohttp application built here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from aiohttp import web
from nats.aio.client import Client
from nats.errors import Error as NatsError
from prometheus_client import CollectorRegistry

from connectors.core.config import GatewaySettings
from connectors.core.errors import StartupError
from connectors.core.gateway import GatewayClient
from connectors.core.urlguard import CallbackPolicy
from gateway.config import GatewayConfig
from gateway.front_door import FrontDoor
from gateway.functions import (
    FunctionCatalog,
    FunctionList,
    FunctionsFile,
    FunctionSource,
    UpstreamFunctions,
)
from gateway.listener import FastListener
from gateway.metrics import GatewayMetrics
from gateway.proxy import ReverseProxy
from gateway.standalone import StandaloneRoutes
from queue_worker import jetstream
from queue_worker.large_bodies import BodyStore
from queue_worker.publisher import Publisher

log = logging.getLogger("ferry.gateway")


class GatewayService:
    name = "gateway"

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.proxy = ReverseProxy(
            self.metrics,
            read_timeout=config.upstream_timeout,
            max_response_bytes=config.max_response_bytes,
        )
        self._upstream: GatewayClient | None = None
        self.catalog = FunctionCatalog(
            self._source(),
            interval=config.refresh_interval,
            on_update=self._count_functions,
            on_failure=self.metrics.refresh_failures.inc,
        )
        self.port = config.port
        self._nc: Client | None = None
        self._runner: web.AppRunner | None = None
        self._listener: FastListener | None = None
        self._connected = False
        self._stopping = asyncio.Event()

    def _source(self) -> FunctionSource:
        if self.config.standalone:
            return FunctionsFile(self.config.functions_file)
        settings = GatewaySettings(
            gateway_url=self.config.upstream_url,
            upstream_timeout=self.config.upstream_timeout,
            max_response_bytes=self.config.max_response_bytes,
            basic_auth=self.config.basic_auth,
            secret_mount_path=self.config.secret_mount_path,
        )
        self._upstream = GatewayClient(settings, max_inflight=4)
        return UpstreamFunctions(self._upstream)

    def _count_functions(self, functions: FunctionList) -> None:
        self.metrics.functions.set(len(functions.functions))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.standalone:
            await self.catalog.prime()
        elif not await self.catalog.refresh():
            log.warning("upstream %s not answering yet; will keep trying", self.config.upstream_url)
        nats = self.config.nats
        self._nc = await jetstream.connect(
            nats.nats_url,
            name="ferry-gateway",
            connect_timeout=nats.nats_connect_timeout,
            on_disconnect=self._on_disconnect,
            on_reconnect=self._on_reconnect,
        )
        self._connected = True
        js = self._nc.jetstream()
        await jetstream.ensure_streams(js, nats.nats_stream, nats.dead_letter_stream)
        bodies = BodyStore(js, nats.large_body_bucket, ttl=nats.large_body_ttl)
        await bodies.ensure()
        front_door = FrontDoor(
            self.catalog,
            Publisher(js, nats.nats_stream, bodies),
            CallbackPolicy.build(
                self.config.callback_allowed_hosts, self.config.callback_allow_private
            ),
            self.metrics,
            max_body_bytes=self.config.max_body_bytes,
            publish_timeout=self.config.publish_timeout,
            connected=lambda: self._connected,
        )
        await self._listen(front_door)
        mode = (
            f"standalone ({self.config.functions_file})"
            if self.config.standalone
            else f"proxy to {self.config.upstream_url}"
        )
        log.info("front door on port %d, %s, queueing on %s", self.port, mode, nats.nats_stream)

    def _app(self, front_door: FrontDoor) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.add_routes(front_door.routes())
        if self.config.standalone:
            app.add_routes(StandaloneRoutes(self.catalog, self.proxy).routes())
        else:
            app.router.add_route("*", "/{tail:.*}", self._to_upstream)
        return app

    async def _listen(self, front_door: FrontDoor) -> None:
        # Bodies are queued and proxied as sent, with their Content-Encoding, as the Go gateway
        # does: aiohttp would otherwise decode a gzip body and leave the header on it.
        self._runner = web.AppRunner(
            self._app(front_door), access_log=None, handle_signals=False, auto_decompress=False
        )
        await self._runner.setup()
        assert self._runner.server is not None
        self._listener = FastListener(front_door, self._runner.server)
        try:
            self.port = await self._listener.start(self.config.listen_host, self.config.port)
        except OSError as exc:
            self._listener = None
            await self._runner.cleanup()
            self._runner = None
            await self._close()
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(f"port={self.config.port}: cannot listen: {reason}") from None

    async def _to_upstream(self, request: web.Request) -> web.StreamResponse:
        return await self.proxy.forward(request, self.config.upstream_url + request.raw_path)

    def ready(self) -> bool:
        listening = self._listener is not None  # streams and bucket ready, port known
        return listening and self._connected and self.catalog.loaded and not self._stopping.is_set()

    async def run(self) -> None:
        refresher = asyncio.create_task(self.catalog.run())
        try:
            await self._stopping.wait()
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()

    async def drain(self, timeout: float) -> None:
        """Stop listening, let in-flight requests finish within `timeout`, then disconnect."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        if self._listener is not None:
            await self._listener.close(timeout)
            self._listener = None
        if self._runner is not None:
            left = max(0.0, deadline - time.monotonic()) if timeout else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runner.cleanup(), left)
            self._runner = None
        await self._close()

    async def _close(self) -> None:
        await self.proxy.close()
        if self._upstream is not None:
            await self._upstream.close()
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(NatsError, TimeoutError):
                await self._nc.drain()
            await self._nc.close()

    # -- connection events -----------------------------------------------------------------

    async def _on_disconnect(self) -> None:
        if self._connected and not self._stopping.is_set():
            log.warning("disconnected from NATS: async calls get 503 until it is back")
        self._connected = False

    async def _on_reconnect(self) -> None:
        self._connected = True
        log.info("reconnected to NATS")

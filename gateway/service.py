"""`ferry gateway` as a runner `Service`: NATS connection, function list, one listening port.

The port is `FastListener`'s: it serves async calls and plain function calls itself (the latter
forwarded by `LeanProxy`) and hands every other connection to the aiohttp application built
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Callable

from aiohttp import web
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from asyncq import jetstream
from asyncq.large_bodies import BodyStore
from asyncq.pub_acks import PubAcks
from asyncq.publisher import Publisher
from asyncq.schedule import unschedule
from connectors.core.config import GatewaySettings
from connectors.core.errors import StartupError
from connectors.core.gateway import GatewayClient, read_basic_auth
from connectors.core.supervision import cancel_and_wait, until_stopped
from connectors.core.urlguard import CallbackPolicy
from connectors.jetstream.connect import NatsConnection, connect
from connectors.jetstream.credentials import check_files
from gateway.arrival_deadline import arrival_deadline
from gateway.call_routes import CallRoutes
from gateway.config import GatewayConfig
from gateway.credentials import Credentials, system_routes_need
from gateway.front_door import FrontDoor
from gateway.function_status import FunctionStatus
from gateway.functions import (
    FunctionCatalog,
    FunctionList,
    FunctionsFile,
    FunctionSource,
    UpstreamFunctions,
)
from gateway.lean_proxy import LeanProxy
from gateway.listener import KEEPALIVE_TIMEOUT, FastListener
from gateway.metrics import GatewayMetrics
from gateway.path_guard import refuse_dot_segments
from gateway.proxy import ReverseProxy
from gateway.queue_routes import QueueRoutes, open_queue_routes
from gateway.queued_calls import QueuedCalls
from gateway.standalone import StandaloneRoutes
from ledger.bucket import bucket_handle, open_or_handle
from ledger.store import LedgerStore

log = logging.getLogger("ferry.gateway")
# How often the front door re-reads whether the queue has per-function subjects (a fair worker
# adds them when it starts): until then calls go to the plain subject, which the worker sorts.
LAYOUT_REFRESH_SECONDS = 30.0

# An application served under its own prefix on the gateway's port (the shell mounts the web
# console this way): made once JetStream is open, given the gateway's JetStream context.
Mount = Callable[[JetStreamContext], tuple[str, web.Application]]


class GatewayService:
    name = "gateway"

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        # read now, so a bad secret is the one line at start-up even while NATS is down
        self._credentials = (
            Credentials(read_basic_auth(config.secret_mount_path)) if config.basic_auth else None
        )
        self.registry = CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.proxy = ReverseProxy(
            self.metrics,
            read_timeout=config.upstream_timeout,
            max_response_bytes=config.max_response_bytes,
        )
        self._upstream: GatewayClient | None = None
        self.function_status = FunctionStatus()  # standalone: invocations, listed since
        self.catalog = FunctionCatalog(
            self._source(),
            interval=config.refresh_interval,
            on_update=self._count_functions,
            on_failure=self.metrics.refresh_failures.inc,
        )
        self.lean_proxy = self._lean_proxy()
        self.port = config.port
        self._nats: NatsConnection | None = None
        self._runner: web.AppRunner | None = None
        self._listener: FastListener | None = None
        self._queued_calls: QueuedCalls | None = None
        self._publisher: Publisher | None = None
        self._acks: PubAcks | None = None
        self._call_routes = CallRoutes(None, credentials=self._credentials)  # ledger off
        self._queue_routes = QueueRoutes(None, credentials=self._credentials)
        self._stopping = asyncio.Event()
        self.mounts: list[Mount] = []  # set before start()
        self._js: JetStreamContext | None = None

    def _lean_proxy(self) -> LeanProxy:
        """What forwards the function calls the lean listener reads: to the functions file's
        URLs in standalone mode, else to the upstream gateway (the config sets one of them)."""
        return LeanProxy(
            self.metrics,
            timeout=self.config.upstream_timeout,
            max_response_bytes=self.config.max_response_bytes,
            upstream_url=self.config.upstream_url,
            catalog=self.catalog if self.config.standalone else None,
            status=self.function_status if self.config.standalone else None,
        )

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
        self.function_status.observe(functions)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        check_files(self.config.nats)
        if self.config.standalone:
            await self.catalog.prime()
        elif not await self.catalog.refresh():
            log.warning("upstream %s not answering yet; will keep trying", self.config.upstream_url)
        nats = self.config.nats
        self._nats = await connect(nats, name="ferry-gateway")
        js = self._js = self._nats.client.jetstream()
        stream = await jetstream.ensure_streams(
            js,
            nats.nats_stream,
            nats.dead_letter_stream,
            replicas=nats.nats_stream_replicas,
            delayed=nats.delayed_stream,
        )
        bodies = BodyStore.from_settings(js, nats)
        await bodies.ensure()
        await self._open_ledger(js)
        self._queue_routes = await open_queue_routes(js, nats, self._credentials)
        self._call_routes.states = self._queue_routes.states  # why a queued call waits
        acks = self._acks = PubAcks(self._nats.client)
        await acks.start()
        self.metrics.publishes_waiting.set_function(lambda: acks.waiting)
        publisher = self._publisher = Publisher(
            js,
            nats.nats_stream,
            bodies,
            stored_in=stream,
            delayed=nats.delayed_stream,
            acks=self._acks,
        )
        await publisher.learn_layout()
        front_door = FrontDoor(
            self.catalog,
            publisher,
            CallbackPolicy.build(
                self.config.callback_allowed_hosts, self.config.callback_allow_private
            ),
            self.metrics,
            max_body_bytes=self.config.max_body_bytes,
            publish_timeout=self.config.publish_timeout,
            connected=lambda: self._nats is not None and self._nats.connected,
            ledger=self._queued_calls,
            max_delay=nats.max_delay,
        )
        await self._listen(front_door)
        mode = (
            f"standalone ({self.config.functions_file})"
            if self.config.standalone
            else f"proxy to {self.config.upstream_url}"
        )
        log.info("front door on port %d, %s, queueing on %s", self.port, mode, stream)
        if self._credentials is None:  # the call and queue routes are ferry's own
            log.warning(_open_routes(self.config.standalone, self.port))

    async def _open_ledger(self, js: JetStreamContext) -> None:
        """The call ledger's bucket (the gateway runs on without it if it cannot be had)."""
        if not self.config.ledger.call_ledger:
            return
        replicas = self.config.nats.nats_stream_replicas
        kv = await open_or_handle(js, self.config.ledger, replicas, who="gateway")
        assert self._nats is not None
        bucket = self.config.ledger.call_ledger_bucket
        if kv is not None:  # None: the bucket must not be written (it could not be bounded)
            self._queued_calls = QueuedCalls(
                self._nats.client,
                bucket,
                self.registry,
                publish_timeout=self.config.publish_timeout,
            )
            await self._queued_calls.start()
        store = LedgerStore(kv or bucket_handle(js, bucket), js, bucket)
        self._call_routes = CallRoutes(
            store,
            credentials=self._credentials,
            unschedule=functools.partial(
                unschedule,
                js,
                self.config.nats.nats_stream,
                delayed=self.config.nats.delayed_stream,
            ),
        )

    def _app(self, front_door: FrontDoor) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_body_bytes,
            middlewares=[
                refuse_dot_segments,
                # proxy mode: the upstream guards its own /system routes (it may take tokens
                # ferry cannot check, e.g. OpenFaaS Pro's IAM); the call routes check anyway
                system_routes_need(self._credentials if self.config.standalone else None),
                arrival_deadline(self.config.read_timeout),
            ],
        )
        assert self._js is not None
        for make in self.mounts:  # ahead of the catch-all route of proxy mode
            prefix, sub_app = make(self._js)
            app.add_subapp(prefix, sub_app)
        app.add_routes(front_door.routes())
        app.add_routes(self._call_routes.routes())
        app.add_routes(self._queue_routes.routes())
        if self.config.standalone:
            standalone = StandaloneRoutes(self.catalog, self.proxy, self.function_status)
            app.add_routes(standalone.routes())
        else:
            app.router.add_route("*", "/{tail:.*}", self._to_upstream)
        return app

    async def _listen(self, front_door: FrontDoor) -> None:
        # Bodies are queued and proxied as sent, with their Content-Encoding, as the Go gateway
        # does: aiohttp would otherwise decode a gzip body and leave the header on it.
        # aiohttp closes a connection whose next head is not complete within its keep-alive
        # timeout: at most read_timeout, so a slow head is cut off there too.
        self._runner = web.AppRunner(
            self._app(front_door),
            access_log=None,
            handle_signals=False,
            auto_decompress=False,
            keepalive_timeout=min(KEEPALIVE_TIMEOUT, self.config.read_timeout),
        )
        await self._runner.setup()
        assert self._runner.server is not None
        listener = FastListener(
            front_door,
            self._runner.server,
            read_timeout=self.config.read_timeout,
            proxy=self.lean_proxy,
        )
        host, port = self.config.listen_host, self.config.port
        try:
            self.port = await listener.start(host, port)
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            await self._close()
            raise StartupError(_cannot_listen(host, port, exc)) from None
        self._listener = listener  # ready from here on

    async def _to_upstream(self, request: web.Request) -> web.StreamResponse:
        return await self.proxy.forward(request, self.config.upstream_url + request.raw_path)

    def ready(self) -> bool:
        return (
            self._listener is not None  # streams and bucket ready, port known
            and self._nats is not None
            and self._nats.connected
            and self.catalog.loaded
            and not self._stopping.is_set()
        )

    async def run(self) -> None:
        """Serve until stopped; raise NatsLost if NATS closes the connection for good, or
        TaskDied if the function-list refresher or the call ledger's writer ends."""
        assert self._nats is not None
        refresher = asyncio.create_task(self.catalog.run(), name="function-list")
        assert self._publisher is not None
        layout = asyncio.create_task(
            self._publisher.follow_layout(LAYOUT_REFRESH_SECONDS), name="queue-layout"
        )
        ledger = self._queued_calls.writer.tasks if self._queued_calls is not None else []
        acks = self._acks.tasks if self._acks is not None else []
        watched = [refresher, layout, *ledger, *acks]
        try:
            await self._nats.while_open(until_stopped(self._stopping, watched))
        finally:
            await cancel_and_wait(refresher, layout)

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
        await self.lean_proxy.close()
        if self._queued_calls is not None:
            await self._queued_calls.close()
        if self._acks is not None:
            await self._acks.close()
        if self._upstream is not None:
            await self._upstream.close()
        if self._nats is not None:
            await self._nats.close(drain=True)


def _open_routes(standalone: bool, port: int) -> str:
    """The one start-up line saying what answers anyone while ferry's own basic auth is off
    (in proxy mode the upstream guards the rest of /system, but not ferry's call routes)."""
    routes = (
        "the call routes (/system/calls/{id}, DELETE /async-function/{id}) and "
        "/system/queues/{function} (pause, resume)"
    )
    if standalone:
        routes = (
            "/system/* (functions, namespaces, info, calls, queues) and DELETE /async-function/{id}"
        )
    return (
        f"basic_auth=false: {routes} answer anyone who reaches port {port}; to close them set "
        "basic_auth=true with basic-auth-user and basic-auth-password in secret_mount_path, "
        "or keep the port private (see docs/security.md)"
    )


def _cannot_listen(host: str, port: int, error: OSError) -> str:
    """One line naming the setting at fault: the address (not resolvable) or the port."""
    if isinstance(error, socket.gaierror):
        return f"listen_host={host}: cannot listen there: {error.strerror or error}"
    reason = os.strerror(error.errno) if error.errno and error.errno > 0 else str(error)
    return f"port={port}: cannot listen: {reason}"

"""Real aiohttp servers on loopback: a gateway of scripted functions, callback receivers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict

from tests.support.ports import eventually


@dataclass
class Call:
    function: str
    method: str
    path: str
    query: str
    headers: CIMultiDict[str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


Handler = Callable[[Call], Awaitable[web.StreamResponse] | web.StreamResponse]


async def _ok(call: Call) -> web.StreamResponse:
    return web.Response(status=200, body=call.body, headers={"Content-Type": "text/plain"})


def held_until(
    release: asyncio.Event, text: str = "done", *, started: asyncio.Event | None = None
) -> Handler:
    """A function that answers 200 only once `release` is set (a call that stays in flight);
    it sets `started`, if given, as each call comes in."""

    async def held(call: Call) -> web.Response:
        if started is not None:
            started.set()
        await release.wait()
        return web.Response(text=text)

    return held


class FakeGateway:
    """Serves `/function/{name}[/{path}]` from per-function handlers and records every call.

    It also tracks how many calls run at once (overall and per function), so tests can check
    concurrency limits from the function's side.
    """

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.calls: list[Call] = []
        self.running = 0
        self.peak = 0
        self.functions: list[dict[str, object]] = []
        self.raw_entries: list[object] = []  # listed as they are in every namespace's answer
        self.namespaces: list[object] | None = None  # /system/namespaces as it is, when set
        self.system_authorizations: list[str | None] = []  # one per /system/* request
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def function(self, name: str, handler: Handler | None = None) -> None:
        self.handlers[name] = handler or _ok

    def subscribe(
        self, name: str, topic: str, namespace: str = "openfaas-fn", **annotations: str
    ) -> None:
        """List `name` in /system/functions with a `topic` annotation (for connectors)."""
        self.functions = [f for f in self.functions if f["name"] != name]
        self.functions.append(
            {"name": name, "namespace": namespace, "annotations": {"topic": topic, **annotations}}
        )

    def calls_to(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.function.split(".", 1)[0] == name]

    async def start(self) -> FakeGateway:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/function/{name}", self._invoke)
        app.router.add_route("*", "/function/{name}/{tail:.*}", self._invoke)
        app.router.add_get("/system/functions", self._list)
        app.router.add_get("/system/namespaces", self._namespaces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        tail = request.match_info.get("tail")
        call = Call(
            function=name,
            method=request.method,
            path="/" + tail if tail is not None else "",
            query=request.raw_path.partition("?")[2],
            headers=CIMultiDict(request.headers),
            body=await request.read(),
        )
        self.calls.append(call)
        handler = self.handlers.get(name) or self.handlers.get(name.split(".", 1)[0])
        if handler is None:
            return web.Response(status=404, text=f"no function {name}")
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            response = handler(call)
            if asyncio.iscoroutine(response):
                response = await response
            return response  # type: ignore[return-value]
        finally:
            self.running -= 1

    async def _list(self, request: web.Request) -> web.Response:
        self.system_authorizations.append(request.headers.get("Authorization"))
        namespace = request.query.get("namespace")
        items = [f for f in self.functions if namespace in (None, f.get("namespace"))]
        return web.json_response([*items, *self.raw_entries])

    async def _namespaces(self, request: web.Request) -> web.Response:
        self.system_authorizations.append(request.headers.get("Authorization"))
        if self.namespaces is not None:
            return web.json_response(self.namespaces)
        names = sorted({str(f.get("namespace", "openfaas-fn")) for f in self.functions})
        return web.json_response(names or ["openfaas-fn"])


@dataclass
class Received:
    path: str
    headers: CIMultiDict[str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


class CallbackReceiver:
    """Records every POST it gets; `status` sets what it answers."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.hold: asyncio.Event | None = None  # when set, each POST waits for it to be set
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str = "/callback") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> CallbackReceiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # large callbacks too
        app.router.add_post("/{tail:.*}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()  # a test that failed while holding must not hold the clean-up
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        self.received.append(
            Received(request.path_qs, CIMultiDict(request.headers), await request.read())
        )
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.status)

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        await eventually(lambda: len(self.received) >= count, timeout, what=f"{count} callbacks")
        return self.received

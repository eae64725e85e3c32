"""The gateway's port over raw sockets: the lean path for async calls and the hand-off to aiohttp.

Every test speaks bytes to a real `ferry gateway` (in-process) on a real NATS server, so what
is checked is exactly what a client sees on the wire and what JetStream stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from asyncq import codec
from asyncq.codec import QueueRequest
from asyncq.publisher import Publisher
from connectors.core.urlguard import CallbackPolicy
from gateway import listener
from gateway.front_door import FrontDoor
from gateway.functions import Function, FunctionCatalog, FunctionList
from gateway.metrics import GatewayMetrics
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.queue import QueueUnderTest
from tests.support.streams import stored_messages
from tests.support.wire import RawWire

BODY = b'{"n": 1}'
LIST_FUNCTIONS = b"GET /system/functions HTTP/1.1\r\nHost: h\r\n\r\n"


@pytest.fixture
def functions_file(tmp_path: Path) -> Path:
    return write_functions(tmp_path / "functions.yml", {"echo": {"url": "http://127.0.0.1:9"}})


def async_call(
    target: str = "/async-function/echo/sub?x=1", body: bytes = BODY, *extra: str
) -> bytes:
    lines = [
        f"POST {target} HTTP/1.1",
        "Host: front.example:8080",
        "X-Callback-Url: http://127.0.0.1:9/done",
        "X-Trace: abc",
        f"Content-Length: {len(body)}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Wire(RawWire):
    """One client connection reading HTTP/1.1 answers off the socket."""

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""


@pytest.fixture
async def gateway_port(queue: QueueUnderTest, functions_file: Path) -> AsyncIterator[int]:
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        yield gw.port


@pytest.fixture
async def wire(gateway_port: int) -> AsyncIterator[Wire]:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway_port)
    yield Wire(reader, writer)
    writer.close()


async def stored(queue: QueueUnderTest) -> list[QueueRequest]:
    return [codec.decode(m.data) for m in await stored_messages(queue.js, queue.stream)]


def without_ids(request: QueueRequest) -> dict[str, object]:
    header = {k: v for k, v in request.header.items() if k not in {"X-Call-Id", "X-Start-Time"}}
    fields = dict(vars(request))
    fields["header"] = header
    for cached in ("call_id", "start_time", "callback"):
        fields.pop(cached, None)
    return fields


async def test_pipelined_calls_are_answered_in_order_and_each_is_stored(
    wire: Wire, queue: QueueUnderTest
) -> None:
    await wire.send(async_call(body=b"one") + async_call(body=b"two") + async_call(body=b""))
    answers = [await wire.answer() for _ in range(3)]
    assert [status for status, _, _ in answers] == [202, 202, 202]
    ids = [headers["x-call-id"] for _, headers, _ in answers]
    requests = await stored(queue)
    assert [r.call_id for r in requests] == ids
    assert [r.body for r in requests] == [b"one", b"two", b""]
    first = requests[0]
    assert (first.function, first.path, first.query_string) == ("echo", "/sub", "x=1")
    assert first.host == "front.example:8080"
    assert first.callback == "http://127.0.0.1:9/done"
    assert first.header["X-Trace"] == ["abc"]
    assert "Content-Length" not in first.header and "Host" not in first.header


async def test_a_call_sent_a_byte_at_a_time_is_stored_whole(
    wire: Wire, queue: QueueUnderTest
) -> None:
    for byte in async_call(body=b"slowly"):
        await wire.send(bytes([byte]))
    status, _, _ = await wire.answer()
    assert status == 202
    (request,) = await stored(queue)
    assert request.body == b"slowly"


async def test_a_request_the_lean_path_leaves_to_aiohttp_is_served_on_the_same_connection(
    wire: Wire, queue: QueueUnderTest
) -> None:
    await wire.send(async_call())
    assert (await wire.answer())[0] == 202
    await wire.send(LIST_FUNCTIONS)
    status, headers, body = await wire.answer()
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert b'"name": "echo"' in body or b'"name":"echo"' in body
    await wire.send(async_call(body=b"after"))  # aiohttp now serves async calls here too
    assert (await wire.answer())[0] == 202
    assert [r.body for r in await stored(queue)] == [BODY, b"after"]


async def test_a_call_served_by_aiohttp_is_stored_exactly_as_the_lean_path_stores_it(
    wire: Wire, queue: QueueUnderTest
) -> None:
    chunked = async_call(body=b"").replace(
        b"Content-Length: 0", b"Transfer-Encoding: chunked"
    ) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
    await wire.send(async_call())
    assert (await wire.answer())[0] == 202
    await wire.send(chunked)  # Transfer-Encoding: chunked is left to aiohttp
    assert (await wire.answer())[0] == 202
    lean, full = await stored(queue)
    assert without_ids(lean) == without_ids(full)
    assert lean.call_id != full.call_id


async def test_refusals_on_the_lean_path_keep_the_connection_open(wire: Wire) -> None:
    await wire.send(async_call("/async-function/nope"))
    status, headers, body = await wire.answer()
    assert (status, body) == (404, b"function nope not found\n")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    await wire.send(async_call("/async-function/echo", b"x", "X-Callback-Url: ftp://cb/"))
    assert (await wire.answer())[0] == 202  # the first X-Callback-Url counts
    await wire.send(
        async_call().replace(b"X-Callback-Url: http://127.0.0.1:9/done", b"X-Callback-Url: /x")
    )
    status, _, body = await wire.answer()
    assert status == 400
    assert body.startswith(b"X-Callback-Url refused")
    await wire.send(async_call())
    assert (await wire.answer())[0] == 202


async def test_connection_close_is_answered_then_closed(wire: Wire, queue: QueueUnderTest) -> None:
    await wire.send(async_call("/async-function/echo", b"last", "Connection: close"))
    status, headers, _ = await wire.answer()
    assert (status, headers["connection"]) == (202, "close")
    assert await wire.closed_by_server()
    assert [r.body for r in await stored(queue)] == [b"last"]


async def test_calls_whose_sender_stops_writing_are_still_answered(
    wire: Wire, queue: QueueUnderTest
) -> None:
    await wire.send(async_call(body=b"one") + async_call(body=b"two"))
    wire.writer.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
    first_status, first, _ = await wire.answer()
    last_status, last, _ = await wire.answer()
    assert (first_status, last_status) == (202, 202)
    assert "connection" not in first
    assert last["connection"] == "close"
    assert await wire.closed_by_server()
    requests = await stored(queue)
    assert [r.call_id for r in requests] == [first["x-call-id"], last["x-call-id"]]
    assert [r.body for r in requests] == [b"one", b"two"]


async def test_a_request_cut_short_by_the_senders_eof_is_dropped_and_the_connection_closed(
    wire: Wire, queue: QueueUnderTest
) -> None:
    await wire.send(async_call(body=b"whole") + async_call(body=b"cut")[:-2])
    wire.writer.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
    assert (await wire.answer())[0] == 202
    assert await wire.closed_by_server()
    assert [r.body for r in await stored(queue)] == [b"whole"]


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(
    queue: QueueUnderTest, functions_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener, "KEEPALIVE_TIMEOUT", 0.3)
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        wire = Wire(reader, writer)
        await wire.send(async_call())
        assert (await wire.answer())[0] == 202
        await wire.send(b"POST /async-function/echo HTTP/1.1\r\n")  # and never the rest
        assert await wire.closed_by_server()
        writer.close()
    assert len(await stored(queue)) == 1


async def test_stopping_the_gateway_closes_idle_connections_and_exits_cleanly(
    queue: QueueUnderTest, functions_file: Path
) -> None:
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        wire = Wire(reader, writer)
        await wire.send(async_call())
        assert (await wire.answer())[0] == 202
    # running_gateway has drained the service and checked that it exited 0
    assert await wire.closed_by_server()
    writer.close()


async def test_a_random_mix_of_lean_and_handed_off_requests_is_answered_in_order(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    """Several connections, each sending a seeded random mix of lean async calls, function
    calls (lean and chunked), chunked async calls and other routes, some sent ahead: every
    request gets its own answer, in order, exactly the accepted calls are stored, and the
    function receives exactly the function calls."""
    rng = random.Random(20261129)
    gateway.function("echo")
    functions = write_functions(
        tmp_path / "functions.yml", {"echo": {"url": f"{gateway.url}/function/echo"}}
    )

    kinds = ["lean", "lean", "lean", "chunked", "list", "missing"]
    kinds += ["function", "function", "function", "chunked function"]

    def function_call(body: bytes, chunked: bool) -> bytes:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
        head = f"PUT /function/echo/p?n=1 HTTP/1.1\r\nHost: h\r\n{framing}\r\n\r\n".encode()
        if not chunked:
            return head + body
        return head + (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"

    def chunked(body: bytes) -> bytes:
        head = async_call("/async-function/echo", b"").replace(
            b"Content-Length: 0", b"Transfer-Encoding: chunked"
        )
        return head + (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"

    async def one_connection(number: int, port: int) -> tuple[list[bytes], list[bytes]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        wire = Wire(reader, writer)
        accepted: list[bytes] = []
        proxied: list[bytes] = []
        echoed: list[bytes] = []  # answers still to come from the function, in order
        try:
            for step in range(12):
                burst: list[tuple[bytes, int, bytes | None]] = []
                for _ in range(rng.choice((1, 1, 2, 3))):
                    body = b"c%d-%d-%d" % (number, step, len(burst))
                    kind = rng.choice(kinds)
                    if kind in ("function", "chunked function"):
                        burst.append((function_call(body, kind != "function"), 200, None))
                        proxied.append(body)
                        echoed.append(body)
                    elif kind == "lean":
                        burst.append((async_call("/async-function/echo", body), 202, body))
                    elif kind == "chunked":
                        burst.append((chunked(body), 202, body))
                    elif kind == "list":
                        burst.append((LIST_FUNCTIONS, 200, None))
                    else:
                        burst.append((async_call("/async-function/nope", body), 404, None))
                await wire.send(b"".join(data for data, _, _ in burst))
                for data, status, stored_body in burst:
                    answered, _, answer_body = await wire.answer()
                    assert answered == status
                    if stored_body is not None:
                        accepted.append(stored_body)
                    if data.startswith(b"PUT /function/"):  # the function echoes the body
                        assert answer_body == echoed.pop(0)
        finally:
            writer.close()
        return accepted, proxied

    async with running_gateway(gateway_env(queue, functions_file=str(functions))) as gw:
        sent = await asyncio.gather(*(one_connection(n, gw.port) for n in range(4)))
    stored_bodies = sorted(r.body for r in await stored(queue))
    assert stored_bodies == sorted(body for bodies, _ in sent for body in bodies)
    calls = gateway.calls_to("echo")
    assert sorted(c.body for c in calls) == sorted(body for _, bodies in sent for body in bodies)
    assert {(c.method, c.path, c.query) for c in calls} == {("PUT", "/p", "n=1")}


class HeldPublisher:
    """Stands in for JetStream: each call is stored only when the test lets it through."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def enqueue(self, request: QueueRequest, *, timeout: float) -> object:
        self.started.set()
        await self.release.wait()
        return SimpleNamespace(duplicate=False)


async def held_listener(publisher: HeldPublisher) -> tuple[listener.FastListener, int]:
    class Listed:
        async def load(self) -> FunctionList:
            return FunctionList((Function("echo"),))

    catalog = FunctionCatalog(Listed(), interval=60)
    await catalog.prime()
    front_door = FrontDoor(
        catalog,
        cast(Publisher, publisher),
        CallbackPolicy.build((), True),
        GatewayMetrics(CollectorRegistry()),
        max_body_bytes=1024,
        publish_timeout=5,
        connected=lambda: True,
    )

    async def other(_: web.BaseRequest) -> web.Response:
        return web.Response()

    lean = listener.FastListener(front_door, web.Server(other))
    return lean, await lean.start("127.0.0.1", 0)


async def test_on_shutdown_a_call_being_stored_is_answered_before_its_connection_closes() -> None:
    publisher = HeldPublisher()
    lean, port = await held_listener(publisher)
    busy = Wire(*await asyncio.open_connection("127.0.0.1", port))
    idle = Wire(*await asyncio.open_connection("127.0.0.1", port))
    await busy.send(async_call("/async-function/echo"))
    await asyncio.wait_for(publisher.started.wait(), 5)
    closing = asyncio.create_task(lean.close(timeout=10))
    assert await idle.closed_by_server()
    assert not closing.done()
    publisher.release.set()
    status, headers, _ = await busy.answer()
    assert (status, headers["connection"]) == (202, "close")
    assert await busy.closed_by_server()
    await asyncio.wait_for(closing, 5)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_on_shutdown_a_call_not_stored_in_time_is_cut_off_unanswered() -> None:
    publisher = HeldPublisher()
    lean, port = await held_listener(publisher)
    busy = Wire(*await asyncio.open_connection("127.0.0.1", port))
    await busy.send(async_call("/async-function/echo"))
    await asyncio.wait_for(publisher.started.wait(), 5)
    await asyncio.wait_for(lean.close(timeout=0.2), 5)
    with contextlib.suppress(ConnectionError):
        assert await busy.closed_by_server()
    publisher.release.set()

"""Function calls on the lean path (`/function/...` read by the listener, forwarded by the http1
client) over raw sockets, against the aiohttp path they replace.

The upstream is a raw server that records the exact bytes it receives and answers with exactly
the bytes a test gives it, so what is checked is what the function and the caller see on the
wire. A connection is put on the aiohttp path by sending first a request the lean path leaves
to aiohttp (`GET /system/info`, which proxy mode forwards too).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import Call, FakeGateway
from tests.support.http1 import RawServer, Reply
from tests.support.queue import QueueUnderTest
from tests.support.wire import RawWire

HAND_OFF = b"GET /system/info HTTP/1.1\r\nHost: front.example\r\n\r\n"
ANSWER = (
    b"HTTP/1.1 201 Made Here\r\nContent-Type: text/x-fn\r\nX-Fn: one\r\nX-Fn: two\r\n"
    b"Set-Cookie: a=1\r\nContent-Length: 5\r\n\r\nhello"
)


def call(method: str, target: str, body: bytes | None = None, *extra: str) -> bytes:
    """A request as a client writes it: Content-Length only when `body` is given."""
    lines = [f"{method} {target} HTTP/1.1", "Host: front.example:8080", *extra]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def answering(function_answer: bytes) -> Callable[[bytes], bytes]:
    """An upstream: `[]` to the gateway's /system/ requests, `function_answer` to the rest."""

    def reply(request: bytes) -> bytes:
        if request.startswith(b"GET /system/"):
            return (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"
            )
        return function_answer

    return reply


def echoing(request: bytes) -> bytes:
    """An upstream answering each function call with its own body, and hop-by-hop headers."""
    if request.startswith(b"GET /system/"):
        return answering(b"")(request)
    body = request.partition(b"\r\n\r\n")[2]
    return (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n"
        b"Keep-Alive: timeout=5\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def function_calls(upstream: RawServer) -> list[bytes]:
    return [r for r in upstream.requests if b" /function/" in r.split(b"\r\n", 1)[0]]


def as_received(request: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Request line, headers (lower-case names, sorted: the two clients order them apart) and
    body of a request as the upstream received it."""
    head, _, body = request.partition(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = sorted((n.lower(), v.strip()) for n, _, v in (f.partition(":") for f in fields))
    return line, headers, body


@pytest.fixture
async def upstream(raw: Callable[[Reply], RawServer]) -> RawServer:
    server = raw(answering(ANSWER))
    await server.start()
    return server


@pytest.fixture
async def port(queue: QueueUnderTest, upstream: RawServer) -> AsyncIterator[int]:
    env = gateway_env(queue, upstream_url=f"http://127.0.0.1:{upstream.port}")
    async with running_gateway(env) as gw:
        yield gw.port


async def both_ways(port: int, request: bytes) -> list[tuple[str, list[tuple[str, str]], bytes]]:
    """What the caller gets for `request` on the lean path, then on the aiohttp path."""
    answers = []
    for prefix in (b"", HAND_OFF):
        wire = await RawWire.open(port)
        try:
            await wire.send(prefix + request)
            if prefix:
                await wire.answer()
            answers.append(await wire.answer_head())
        finally:
            wire.close()
    lean, full = ([name for name, _ in headers] for _, headers, _ in answers)
    assert "Server" not in lean and "Server" in full, "both answers came from one path"
    return answers


SHAPES = {
    "POST with a body, a tail and a query": call(
        "POST", "/function/echo/sub/path?a=1&b=two%20words&c=%2B;x:@/?", b"payload"
    ),
    "GET without a body": call("GET", "/function/echo"),
    "GET with Content-Length: 0": call("GET", "/function/echo/", b""),
    "DELETE without a body": call("DELETE", "/function/echo.team-a/x"),
    "PUT with an empty body": call("PUT", "/function/echo?", b""),
    "PATCH without Content-Length": call("PATCH", "/function/echo?q"),
}


@pytest.mark.parametrize("request_bytes", SHAPES.values(), ids=SHAPES.keys())
async def test_the_function_and_the_caller_see_the_same_through_both_paths(
    port: int, upstream: RawServer, request_bytes: bytes
) -> None:
    extra = (
        "Authorization: Basic dTpw",
        "X-Forwarded-For: 10.1.2.3",
        "X-Forwarded-Host: outside.example",
        "Connection: keep-alive, X-Hop",
        "X-Hop: dropped",
        "Keep-Alive: timeout=5",
        "TE: trailers",
        "Proxy-Authorization: Basic secret",
        "x-custom: b",
        "Content-Type: text/plain",
    )
    head, _, body = request_bytes.partition(b"\r\n\r\n")
    request_bytes = head + ("".join(f"\r\n{e}" for e in extra)).encode() + b"\r\n\r\n" + body
    lean, full = await both_ways(port, request_bytes)

    def comparable(answer: tuple[str, list[tuple[str, str]], bytes]) -> object:
        status, headers, body = answer
        # Date differs by the second; Server names aiohttp on its path alone
        return status, sorted(h for h in headers if h[0] not in {"Date", "Server"}), body

    assert comparable(lean) == comparable(full)
    assert lean[0] == "HTTP/1.1 201 Made Here"
    via_lean, via_aiohttp = (as_received(r) for r in function_calls(upstream))
    assert via_lean == via_aiohttp
    line, headers, _ = via_lean
    names = [name for name, _ in headers]
    assert ("host", f"127.0.0.1:{upstream.port}") in headers
    assert ("authorization", "Basic dTpw") in headers
    assert ("x-forwarded-for", "10.1.2.3") in headers
    assert not {"connection", "x-hop", "keep-alive", "te", "proxy-authorization"} & set(names)
    target = request_bytes.split(b" ")[1].decode()
    if target.endswith("?") and target.count("?") == 1:
        target = target[:-1]  # an empty query is dropped by both clients
    assert line.split(" ")[1] == target


async def test_a_repeated_request_header_reaches_the_function_each_time(
    port: int, upstream: RawServer
) -> None:
    """Unlike the aiohttp path, which passes on only the last of them (left as it is there)."""
    wire = await RawWire.open(port)
    await wire.send(call("POST", "/function/echo", b"", "X-Custom: a", "x-custom: b"))
    assert (await wire.answer())[0] == 201
    wire.close()
    ((_, headers, _),) = (as_received(r) for r in function_calls(upstream))
    assert [h for h in headers if h[0] == "x-custom"] == [("x-custom", "a"), ("x-custom", "b")]


async def test_hop_by_hop_headers_of_the_answer_are_removed_and_its_body_reframed(
    queue: QueueUnderTest, raw: Callable[[Reply], RawServer]
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: X-Hop\r\nX-Hop: no\r\n"
        b"Trailer: X-T\r\nX-Kept: yes\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
    )
    upstream = raw(answering(chunked))
    await upstream.start()
    env = gateway_env(queue, upstream_url=f"http://127.0.0.1:{upstream.port}")
    async with running_gateway(env) as gw:
        wire = await RawWire.open(gw.port)
        await wire.send(call("GET", "/function/f"))
        status, headers, body = await wire.answer()
        wire.close()
    assert (status, body) == (200, b"abcde")
    assert headers["content-length"] == "5"
    assert headers["x-kept"] == "yes"
    assert not {"transfer-encoding", "connection", "x-hop", "trailer"} & set(headers)


async def test_pipelined_function_calls_are_answered_in_order_over_one_upstream_connection(
    queue: QueueUnderTest, raw: Callable[[Reply], RawServer]
) -> None:
    upstream = raw(echoing)
    await upstream.start()
    env = gateway_env(queue, upstream_url=f"http://127.0.0.1:{upstream.port}")
    async with running_gateway(env) as gw:
        wire = await RawWire.open(gw.port)
        bodies = [b"one", b"two", b"", b"four"]
        await wire.send(b"".join(call("POST", "/function/echo", body) for body in bodies))
        answers = [await wire.answer() for _ in bodies]
        wire.close()
    assert [(status, body) for status, _, body in answers] == [(200, b) for b in bodies]
    assert not {"connection", "x-hop", "keep-alive"} & set(answers[0][1])
    assert len(function_calls(upstream)) == 4
    assert upstream.connections == 2  # the function list's, and one kept alive for the calls


async def test_a_connection_moves_to_aiohttp_mid_stream_and_answers_stay_in_order(
    port: int, upstream: RawServer, queue: QueueUnderTest
) -> None:
    wire = await RawWire.open(port)
    chunked = call("POST", "/function/echo", None, "Transfer-Encoding: chunked") + b"0\r\n\r\n"
    await wire.send(call("POST", "/function/echo", b"lean") + chunked + call("GET", "/function/e"))
    answers = [await wire.answer() for _ in range(3)]
    wire.close()
    assert [(status, body) for status, _, body in answers] == [(201, b"hello")] * 3
    assert len(function_calls(upstream)) == 3


async def test_a_call_sent_a_byte_at_a_time_reaches_the_function_whole(
    port: int, upstream: RawServer
) -> None:
    wire = await RawWire.open(port)
    for byte in call("PUT", "/function/echo/slow", b"slowly"):
        await wire.send(bytes([byte]))
    assert (await wire.answer())[0] == 201
    wire.close()
    ((_, _, body),) = (as_received(r) for r in function_calls(upstream))
    assert body == b"slowly"


async def test_connection_close_is_answered_then_closed(port: int) -> None:
    wire = await RawWire.open(port)
    await wire.send(call("POST", "/function/echo", b"x", "Connection: close"))
    status, headers, _ = await wire.answer()
    assert (status, headers["connection"]) == (201, "close")
    assert await wire.closed_by_server()


async def test_calls_whose_sender_stops_writing_are_still_answered(port: int) -> None:
    wire = await RawWire.open(port)
    await wire.send(call("POST", "/function/echo", b"a") + call("GET", "/function/echo"))
    wire.writer.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
    first, last = await wire.answer(), await wire.answer()
    assert (first[0], last[0]) == (201, 201)
    assert "connection" not in first[1] and last[1]["connection"] == "close"
    assert await wire.closed_by_server()


async def _slow(call: Call) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="late")


async def test_refusals_and_upstream_failures_keep_the_connection_and_match_aiohttp(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    """Standalone mode: an unknown function is a 404, a function that cannot be reached or
    does not answer within upstream_timeout a 502, on both paths; a path with an encoded dot
    segment is left to aiohttp, which refuses it; the connection serves the next call; both
    paths count what they forwarded, by status."""
    gateway.function("echo")
    gateway.function("slow", _slow)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nothing listens on
    functions = write_functions(
        tmp_path / "functions.yml",
        {
            "echo": {"url": f"{gateway.url}/function/echo"},
            "slow": {"url": f"{gateway.url}/function/slow"},
            "down": {"url": f"http://127.0.0.1:{closed.getsockname()[1]}"},
        },
    )
    env = gateway_env(queue, functions_file=str(functions), upstream_timeout="500ms")
    try:
        async with running_gateway(env) as gw:
            for target, status in [
                ("/function/missing", 404),
                ("/function/down/x", 502),
                ("/function/slow", 502),
            ]:
                lean, full = await both_ways(gw.port, call("POST", target, b"b"))
                assert int(lean[0].split(" ")[1]) == int(full[0].split(" ")[1]) == status
                wire = await RawWire.open(gw.port)
                await wire.send(call("POST", target, b"b") + call("POST", "/function/echo", b"ok"))
                assert (await wire.answer())[0] == status
                assert (await wire.answer())[:3:2] == (200, b"ok")
                wire.close()
            assert lean[2].startswith(b"upstream http://127.0.0.1:")
            wire = await RawWire.open(gw.port)
            await wire.send(
                call("GET", "/function/echo/%2e%2e/system") + call("GET", "/function/echo")
            )
            status, _, body = await wire.answer()
            assert status == 400
            assert body.startswith(b"bad request:")
            assert (await wire.answer())[0] == 200
            wire.close()
            proxied = {
                status: gw.registry.get_sample_value(
                    "gateway_proxied_requests_total", {"status": status}
                )
                for status in ("200", "404", "502")
            }
            # 502: down and slow, three times each (both paths, then pipelined); 200: the
            # echo after each pipelined refusal, and the last one; a 404 was never forwarded
            assert proxied == {"200": 4.0, "404": None, "502": 6.0}
    finally:
        closed.close()


async def test_standalone_calls_reach_the_functions_url_with_tail_and_query(
    queue: QueueUnderTest, raw: Callable[[Reply], RawServer], tmp_path: Path
) -> None:
    function = raw(answering(ANSWER))
    await function.start()
    functions = write_functions(tmp_path / "functions.yml", {"echo": {"url": function.url("/fn")}})
    targets = ["/function/echo/sub/?q=1&r", "/function/echo?x=%20", "/function/echo"]
    async with running_gateway(gateway_env(queue, functions_file=str(functions))) as gw:
        for target in targets:
            lean, full = await both_ways(gw.port, call("POST", target, b"hi"))
            assert lean[0] == full[0] == "HTTP/1.1 201 Made Here"
    received = [as_received(r)[0] for r in function.requests]
    expected = ["/fn/sub/?q=1&r", "/fn?x=%20", "/fn"]
    assert received == [f"POST {path} HTTP/1.1" for path in expected for _ in range(2)]


async def test_a_function_call_whose_body_arrives_too_slowly_gets_408_and_is_not_forwarded(
    queue: QueueUnderTest, upstream: RawServer
) -> None:
    env = gateway_env(queue, upstream_url=f"http://127.0.0.1:{upstream.port}", read_timeout="500ms")
    async with running_gateway(env) as gw:
        wire = await RawWire.open(gw.port)
        await wire.send(call("POST", "/function/echo", b"0123456789")[:-8])  # 8 bytes short
        status, headers, _ = await wire.answer()
        assert (status, headers["connection"]) == (408, "close")
        assert await wire.closed_by_server()
        wire.close()
    assert function_calls(upstream) == []

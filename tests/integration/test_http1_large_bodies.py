"""The http1 client with large bodies: answers past `max_response_bytes` are cut off and the
connection closed; request bodies are streamed with their Content-Length, never held whole."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from connectors.core.http1 import BodySourceError, Http1Client, ResponseTooLarge, StreamedBody
from tests.support.http1 import RawServer, Reply, serve
from tests.support.large import RepeatedBlocks, stream_huge
from tests.support.ports import eventually

LIMIT = 1024 * 1024


async def huge_or_small(request: web.Request) -> web.StreamResponse:
    if request.path == "/chunked":
        return await stream_huge(request, declared=False)
    if request.path == "/length":
        return await stream_huge(request, declared=True)
    return web.Response(text="small")


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_an_answer_past_max_response_bytes_fails_and_its_connection_is_closed(
    framing: str,
) -> None:
    runner, base = await serve(huge_or_small)
    client = Http1Client(limit=2, max_response_bytes=LIMIT)
    try:
        with pytest.raises(ResponseTooLarge, match="larger than max_response_bytes") as refused:
            await client.request("GET", f"{base}/{framing}", timeout=20)
        assert refused.value.status == 200
        assert client._idle_count == 0  # not kept for another call
        assert (await client.request("GET", f"{base}/small", timeout=20)).body == b"small"
    finally:
        await client.close()
        await runner.cleanup()


async def test_an_answer_at_max_response_bytes_is_read_whole() -> None:
    async def exactly(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * LIMIT)

    runner, base = await serve(exactly)
    client = Http1Client(limit=2, max_response_bytes=LIMIT)
    try:
        assert len((await client.request("GET", base, timeout=20)).body) == LIMIT
    finally:
        await client.close()
        await runner.cleanup()


async def test_a_streamed_body_arrives_whole_with_its_content_length() -> None:
    seen: list[tuple[str | None, int, str]] = []

    async def digest(request: web.Request) -> web.Response:
        hashed, size = hashlib.sha256(), 0
        async for piece in request.content.iter_any():
            hashed.update(piece)
            size += len(piece)
        seen.append((request.headers.get("Content-Length"), size, hashed.hexdigest()))
        return web.Response(text="ok")

    runner, base = await serve(digest)
    client = Http1Client(limit=2)
    body = RepeatedBlocks(20 * 1024 * 1024 + 123)
    try:
        for _ in range(2):  # the second on the same, reused connection
            response = await client.request(
                "POST", f"{base}/f", body=StreamedBody(body.size, body), timeout=30
            )
            assert response.body == b"ok"
    finally:
        await client.close()
        await runner.cleanup()
    assert seen == [(str(body.size), body.size, body.sha256())] * 2


async def test_a_streamed_body_shorter_than_declared_fails_and_is_never_taken_as_whole(
    raw: Callable[[Reply], RawServer],
) -> None:
    server = raw(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await server.start()

    async def short() -> AsyncIterator[bytes]:
        yield b"only this"

    client = Http1Client(limit=2)
    try:
        with pytest.raises(BodySourceError, match="ended after 9 of its 100 bytes"):
            await client.request("POST", server.url(), body=StreamedBody(100, short()), timeout=5)
    finally:
        await client.close()
    await eventually(lambda: server.ended == server.connections == 1, what="the server's side")
    assert server.requests == []  # the server never saw a complete request


async def test_a_failing_body_source_closes_the_connection_with_its_error(
    raw: Callable[[Reply], RawServer],
) -> None:
    server = raw(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await server.start()

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 10
        raise BodySourceError("the store went away")

    client = Http1Client(limit=2)
    try:
        with pytest.raises(BodySourceError, match="the store went away"):
            await client.request("POST", server.url(), body=StreamedBody(100, broken()), timeout=5)
        assert client._idle_count == 0
    finally:
        await client.close()
    await eventually(lambda: server.ended == server.connections == 1, what="the server's side")
    assert server.requests == []


async def test_an_early_answer_stops_the_streamed_body_and_drops_the_connection() -> None:
    received = asyncio.get_running_loop().create_future()

    async def refuse_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
        size = 0
        while piece := await reader.read(65536):  # until the client hangs up
            size += len(piece)
        received.set_result(size)
        writer.close()

    server = await asyncio.start_server(refuse_at_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Http1Client(limit=2)
    body = RepeatedBlocks(256 * 1024 * 1024)
    try:
        response = await client.request(
            "POST", f"http://127.0.0.1:{port}/f", body=StreamedBody(body.size, body), timeout=30
        )
        assert response.status == 413
        assert await asyncio.wait_for(received, 20) < body.size
    finally:
        await client.close()
        server.close()
        await server.wait_closed()

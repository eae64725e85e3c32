"""Finding 5: a request that takes longer than `read_timeout` to arrive is cut off (408 where an
answer can still be sent), on the lean path and on connections handed to aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.service import GatewayService
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.queue import QueueUnderTest
from tests.support.wire import RawWire, raw_wire

READ_TIMEOUT = "1s"


@pytest.fixture
async def front(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> AsyncIterator[GatewayService]:
    gateway.function("echo")
    function_url = f"{gateway.url}/function/echo"
    functions = write_functions(tmp_path / "f.yml", {"echo": {"url": function_url}})
    env = gateway_env(queue, functions_file=str(functions), read_timeout=READ_TIMEOUT)
    async with running_gateway(env) as service:
        yield service


async def _trickle(wire: RawWire, data: bytes) -> None:
    """Send `data` a byte at a time, a little slower than the deadline allows in all."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            await wire.send(bytes([byte]))
            await asyncio.sleep(0.1)


async def _cut_off(wire: RawWire, data: bytes) -> tuple[int | None, bool]:
    """Trickle `data`; return the status the server answered (None: none) and whether it
    closed the connection before the client was done."""
    sender = asyncio.create_task(_trickle(wire, data))
    try:
        try:
            status: int | None = (await wire.answer(timeout=20))[0]
        except asyncio.IncompleteReadError:
            status = None
        closed = await wire.closed(timeout=20)
        return status, closed and not sender.done()
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


SLOW_BODY = b"x" * 1000  # 100 s at the trickle's pace


async def test_a_slow_body_on_the_lean_path_gets_408(front: GatewayService) -> None:
    async with raw_wire(front.port) as wire:
        await wire.send(
            b"POST /async-function/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n"
        )
        assert await _cut_off(wire, SLOW_BODY) == (408, True)


async def test_a_slow_head_on_the_lean_path_gets_408(front: GatewayService) -> None:
    async with raw_wire(front.port) as wire:
        head = b"POST /async-function/echo HTTP/1.1\r\n" + b"X-Pad: " + b"p" * 2000
        assert await _cut_off(wire, head) == (408, True)


async def test_a_slow_body_on_the_aiohttp_path_gets_408(front: GatewayService) -> None:
    async with raw_wire(front.port) as wire:
        # a percent-escape in the path: the lean path leaves this request to aiohttp
        await wire.send(
            b"POST /async-function/echo/%41 HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n"
        )
        assert await _cut_off(wire, SLOW_BODY) == (408, True)


async def test_a_slow_proxied_body_is_cut_off(front: GatewayService) -> None:
    async with raw_wire(front.port) as wire:
        await wire.send(b"PUT /function/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n")
        status, closed = await _cut_off(wire, SLOW_BODY)
        assert closed and status in (408, None)


async def test_a_slow_second_head_on_a_connection_aiohttp_serves_is_cut_off(
    front: GatewayService,
) -> None:
    async with raw_wire(front.port) as wire:
        await wire.send(b"GET /system/functions HTTP/1.1\r\nHost: h\r\n\r\n")
        first, _, _ = await wire.answer()
        assert first == 200
        head = b"GET /system/functions HTTP/1.1\r\nX-Pad: " + b"p" * 2000
        status, closed = await _cut_off(wire, head)
        assert closed and status in (408, None)


async def _keep_sending(wire: RawWire) -> None:
    with contextlib.suppress(ConnectionError):
        while True:
            await wire.send(b"x")
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "path", ["/async-function/echo", "/async-function/echo/%41"], ids=["lean", "aiohttp"]
)
async def test_a_client_still_sending_when_cut_off_reads_its_408_after_the_fact(
    front: GatewayService, path: str
) -> None:
    """Closing at once while the client still sends makes the kernel reset the connection, and
    the client then loses the 408 it had not read yet: the answer is half-closed instead."""
    async with raw_wire(front.port) as wire:
        await wire.send(
            f"POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n".encode()
        )
        sender = asyncio.create_task(_keep_sending(wire))
        try:
            await asyncio.sleep(1.3)  # the 408 is sent at 1 s (read_timeout); not read until now
            status, _, body = await wire.answer(timeout=20)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    assert (status, body) == (408, b"the request took longer than read_timeout to arrive\n")

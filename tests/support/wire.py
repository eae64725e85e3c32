"""Raw HTTP/1.1 over a loopback socket: what a client that does not normalise anything sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class RawWire:
    """One client connection: send bytes, read answers (status, lower-case headers, body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    @classmethod
    async def open(cls, port: int) -> RawWire:
        """A connection the caller closes (`close`); `raw_wire` closes it for you."""
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def close(self) -> None:
        self.writer.close()

    async def answer_head(self, timeout: float = 10.0) -> tuple[str, list[tuple[str, str]], bytes]:
        """The next answer: its status line, its headers as sent, and its Content-Length body
        (for comparing answers byte for byte)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        length = next((int(v) for n, v in headers if n.lower() == "content-length"), 0)
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return status_line, headers, body

    async def answer(self, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers (lower-case names, the last of each) and body."""
        status_line, headers, body = await self.answer_head(timeout)
        return int(status_line.split(" ")[1]), {n.lower(): v for n, v in headers}, body

    async def closed_by_server(self) -> bool:
        """True if the next read finds the connection closed (nothing more was sent)."""
        return await asyncio.wait_for(self.reader.read(1), 10) == b""

    async def closed(self, timeout: float = 10.0) -> bool:
        """True once the server has closed the connection (what is left unread is dropped)."""
        while True:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not chunk:
                return True


@asynccontextmanager
async def raw_wire(port: int) -> AsyncIterator[RawWire]:
    wire = await RawWire.open(port)
    try:
        yield wire
    finally:
        wire.close()


async def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request on a fresh connection and read its answer."""
    async with raw_wire(port) as wire:
        await wire.send(data)
        return await wire.answer()


def request(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: front.example", *headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

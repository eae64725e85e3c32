"""A raw client connection for the gateway's port that keeps each answer's status line and its
headers as sent (for comparing answers byte for byte), and reads them in order."""

from __future__ import annotations

import asyncio


class Wire:
    """One client connection reading HTTP/1.1 answers off the socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Wire:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer_head(self) -> tuple[str, list[tuple[str, str]], bytes]:
        """The next answer: its status line, headers as sent, and its Content-Length body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        length = next((int(v) for n, v in headers if n.lower() == "content-length"), 0)
        body = await asyncio.wait_for(self.reader.readexactly(length), 10)
        return status_line, headers, body

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers (lower-case names) and body."""
        status_line, headers, body = await self.answer_head()
        return int(status_line.split(" ")[1]), {n.lower(): v for n, v in headers}, body

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""

    def close(self) -> None:
        self.writer.close()

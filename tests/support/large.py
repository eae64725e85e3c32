"""Large bodies without large memory: a function server that streams hundreds of megabytes
from one small block, a body source for streamed requests, and what is left in a body bucket."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

from aiohttp import web
from nats.js.errors import NotFoundError

from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest

BLOCK = os.urandom(64 * 1024)
HUGE = 500 * 1024 * 1024  # what a hostile function answers


async def stream_huge(request: web.Request, *, declared: bool) -> web.StreamResponse:
    """Answer HUGE bytes, with Content-Length or chunked, one block at a time; stops as soon
    as the caller hangs up (so the server stays small and quick whatever the caller does)."""
    response = web.StreamResponse()
    if declared:
        response.content_length = HUGE
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for _ in range(HUGE // len(BLOCK)):
            await response.write(BLOCK)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the caller closed the connection: what a bounded reader does
    return response


async def hostile_functions(request: web.Request) -> web.StreamResponse:
    """`/function/{name}`: `huge-chunked` and `huge-length` answer HUGE bytes; any other
    name echoes its body."""
    name = request.path.split("/")[2]
    if name == "huge-chunked":
        return await stream_huge(request, declared=False)
    if name == "huge-length":
        return await stream_huge(request, declared=True)
    return web.Response(body=await request.read())


class RepeatedBlocks:
    """`size` bytes made of BLOCK repeated, re-iterable, with the digest of the whole."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def _chunks(self) -> AsyncIterator[bytes]:
        left = self.size
        while left > 0:
            piece = BLOCK[: min(left, len(BLOCK))]
            left -= len(piece)
            yield piece

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    def sha256(self) -> str:
        digest = hashlib.sha256()
        whole, rest = divmod(self.size, len(BLOCK))
        for _ in range(whole):
            digest.update(BLOCK)
        digest.update(BLOCK[:rest])
        return digest.hexdigest()


async def live_objects(queue: QueueUnderTest, bucket: str) -> list[str]:
    """The chunk subjects of the objects in `bucket` still holding data (one per object;
    deleting an object purges its chunks)."""
    try:
        info = await queue.js.stream_info(f"OBJ_{bucket}", subjects_filter=f"$O.{bucket}.C.>")
    except NotFoundError:
        return []
    return sorted(info.state.subjects or {})


async def no_objects_left(queue: QueueUnderTest, bucket: str) -> None:
    async def empty() -> bool:
        return await live_objects(queue, bucket) == []

    await eventually(empty, 20, what=f"no objects left in {bucket}")

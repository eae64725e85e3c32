"""Reading an answer two ways, for the http1 answer parser's tests: ferry's parser fed in
pieces, and aiohttp's own response parser as the reference."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpResponseParser

from connectors.core.http1 import Response
from connectors.core.http1.answer import UNBOUNDED, AnswerParser


def feed_in_pieces(
    data: bytes,
    cuts: list[int],
    head_only: bool = False,
    max_body: int = UNBOUNDED,
    after_each: Callable[[AnswerParser], None] | None = None,
) -> Response | None:
    """What ferry's parser makes of `data` cut at `cuts`, the connection closing after it;
    `after_each` looks at the parser after each piece."""
    parser = AnswerParser(head_only, max_body)
    points = [*sorted({min(c, len(data)) for c in cuts}), len(data)]
    start = 0
    for point in points:
        response = parser.feed(data[start:point])
        start = point
        if after_each is not None:
            after_each(parser)
        if response is not None:
            return response
    return parser.finish_at_close()


def aiohttp_reads(data: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """Status, reason, headers and body as aiohttp's response parser reads `data`, the
    connection closing after it."""
    loop = asyncio.new_event_loop()
    try:
        parser = HttpResponseParser(BaseProtocol(loop), loop, 2**16, read_until_eof=True)
        messages, _, _ = parser.feed_data(data)
        parser.feed_eof()
        message, payload = messages[0]
        body = loop.run_until_complete(payload.read())
        return message.code, message.reason, list(message.headers.items()), body
    finally:
        loop.close()

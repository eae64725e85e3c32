"""A lean HTTP/1.1 client for the two calls made per message: the invocation and the callback.

Every message costs one invocation and usually one callback, so this client sets how many
messages one process can carry. aiohttp's `ClientSession` spends about 100 µs of CPU per
request on the 2-core development box (a `ClientRequest`, trace hooks, timers, a stream
reader); this client writes the request in one piece and frames the answer itself, in about a
third of that (`bench/README.md`). aiohttp remains the library for everything else: the
servers, the topic map, the gateway's proxy.

What it does: keep-alive connections pooled per origin under one limit; answers framed by
Content-Length, chunked, or the end of the connection; 1xx interim answers skipped; one timeout
around the whole call; TLS; a pluggable resolver (the SSRF guard checks addresses there). A
request of an idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) on a reused connection
that the server closed before any byte of an answer came back is sent once more on a new
connection; any other (a POST) fails with an HttpError instead, since the server may have read
it before closing.

What it refuses, with an error rather than a guess: header names or values that would break
the framing (CR, LF, NUL, a colon or space in a name), a malformed status line, a head over
64 KiB, conflicting Content-Length values, a broken chunk.
An answer's body is bounded (`max_response_bytes`): past it the answer is not read further,
the connection is closed and the call fails with `ResponseTooLarge`. A request body may be
streamed (`StreamedBody`: a known length, chunks read as they are sent) so that a large one is
never held whole.
Left out on purpose: redirects, proxies, cookies, compression, streamed answers.

`wire` writes requests, `streamed` describes a streamed body, `answer` reads answers,
`client` keeps the connections.
"""

from __future__ import annotations

from connectors.core.http1.answer import Response, ResponseTooLarge
from connectors.core.http1.client import Http1Client, Resolver
from connectors.core.http1.streamed import BodySourceError, StreamedBody
from connectors.core.http1.wire import (
    TOKEN_PATTERN,
    HttpError,
    InvalidRequest,
    Origin,
    as_sent_text,
    encode_head,
    header_lines,
    is_header_value,
    is_token,
    split_url,
)

__all__ = [
    "TOKEN_PATTERN",
    "BodySourceError",
    "Http1Client",
    "HttpError",
    "InvalidRequest",
    "Origin",
    "Resolver",
    "Response",
    "ResponseTooLarge",
    "StreamedBody",
    "as_sent_text",
    "encode_head",
    "header_lines",
    "is_header_value",
    "is_token",
    "split_url",
]

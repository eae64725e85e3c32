"""Synchronous `/function/` calls read by the lean listener, forwarded with ferry's http1 client.

In proxy and standalone mode most of the gateway's traffic can be plain function calls (the
queue worker's own invocations, when its `gateway_url` points at ferry). Through aiohttp's
server and client each one cost about 160 µs of the gateway's CPU; the listener's reader and a
keep-alive pool of `Http1Client` connections do the same work in about 40 (`bench/README.md`).

What the function and the caller see is what `ReverseProxy` (the aiohttp path) gives them:
the caller's headers minus the hop-by-hop ones and those named in Connection, the caller's
Authorization as it came (the gateway's own credentials are for `/system/*` alone), Host set to
the upstream's authority, no `X-Forwarded-*` added; the answer's status, reason and headers
minus the hop-by-hop ones. Differences, on purpose: the answer is re-framed with Content-Length
(it is read whole rather than streamed, so it is bounded by `max_response_bytes`: a longer
answer, declared or chunked, is a 502); the 502s the proxy makes itself are marked
(`connectors.core.gateway_answers`: `X-OpenFaaS-Internal: ferry-gateway` and why);
`upstream_timeout` bounds the whole exchange rather than each wait for bytes; a repeated request
header is passed on each time (aiohttp's client keeps the last); and no `Server` header names
aiohttp.
"""

from __future__ import annotations

import logging
from typing import Final

from connectors.core.gateway_answers import ProxyError, marked
from connectors.core.http1 import Http1Client, HttpError, InvalidRequest, Response, ResponseTooLarge
from connectors.core.http1.answer import NO_BODY_STATUSES
from connectors.core.http1.wire import NO_LENGTH_WHEN_EMPTY
from connectors.core.invoker import HOP_BY_HOP, NOT_FORWARDED
from gateway.front_door import Answer
from gateway.function_status import FunctionStatus
from gateway.functions import Function, FunctionCatalog
from gateway.metrics import GatewayMetrics
from gateway.proxy import connection_named
from gateway.request_head import Head

log = logging.getLogger("ferry.gateway")

# Connections to the upstream in use at once (and kept idle); calls beyond wait for one.
MAX_CONNECTIONS: Final = 1024

# Set by the client library from the request, never copied from the caller's headers.
_REBUILT = NOT_FORWARDED - HOP_BY_HOP
# Methods aiohttp's client sends an empty body for without a Content-Length.
_AIOHTTP_NO_LENGTH = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})


class LeanProxy:
    """Forwards one call at a time per connection; `target` says where each call goes."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        *,
        timeout: float,
        max_response_bytes: int,
        upstream_url: str = "",
        catalog: FunctionCatalog | None = None,
        status: FunctionStatus | None = None,
    ) -> None:
        if bool(upstream_url) == (catalog is not None):
            raise ValueError("give either upstream_url (proxy mode) or catalog (standalone)")
        self.metrics = metrics
        self.timeout = timeout
        self.upstream_url = upstream_url
        self.catalog = catalog
        self.status = status  # standalone: counts the calls to each function
        self.client = Http1Client(limit=MAX_CONNECTIONS, max_response_bytes=max_response_bytes)

    async def close(self) -> None:
        await self.client.close()

    async def target(self, head: Head) -> tuple[str, Function | None] | Answer:
        """The URL a call goes to (and in standalone mode its function), as the aiohttp routes
        work it out, or the 404 refusing it."""
        query = f"?{head.query_string}" if head.query_string else ""
        if self.catalog is None:
            return self.upstream_url + head.path + query, None
        function = await self.catalog.lookup(head.name)
        if function is None:
            return Answer(404, f"function {head.name} not found\n")
        rest = head.path[len("/function/") + len(head.name) :]  # "" or "/{tail}"
        return function.url + rest + query, function

    async def forward(self, head: Head, body: bytes) -> Response | Answer:
        """The upstream's answer, or a 404 (standalone, unknown function) or 502 of our own."""
        found = await self.target(head)
        if isinstance(found, Answer):
            return found
        target, function = found
        try:
            return await self._send(head, body, target)
        finally:
            if function is not None and self.status is not None:
                self.status.invoked(function)

    async def _send(self, head: Head, body: bytes, target: str) -> Response | Answer:
        try:
            response = await self.client.request(
                head.method,
                target,
                headers=_request_headers(head, len(body)),
                body=body,
                timeout=self.timeout,
            )
        except ResponseTooLarge as exc:
            self.metrics.proxied.inc("502")
            log.warning("proxy %s %s refused: %s", head.method, target, exc)
            return Answer(502, f"upstream {target}: {exc}\n", marked(ProxyError.TOO_LARGE))
        except (HttpError, InvalidRequest, TimeoutError) as exc:
            reason = str(exc) or f"no answer within upstream_timeout ({self.timeout:g}s)"
            self.metrics.proxied.inc("502")
            log.warning("proxy %s %s failed: %s", head.method, target, reason)
            error = ProxyError.TIMEOUT if isinstance(exc, TimeoutError) else ProxyError.UNREACHABLE
            text = f"upstream {target} unreachable: {type(exc).__name__}: {reason}\n"
            return Answer(502, text, marked(error))
        self.metrics.proxied.inc(str(response.status))
        return response


def _request_headers(head: Head, length: int) -> list[tuple[str, str]]:
    """The caller's headers as aiohttp's proxy forwards them; Host and Content-Length are the
    client's to write, except the `Content-Length: 0` aiohttp keeps or adds and it would not."""
    named = connection_named(head.headers)
    caller_length = False
    forwarded: list[tuple[str, str]] = []
    for name, value in head.headers:
        lower = name.lower()
        if lower in _REBUILT:
            caller_length = caller_length or lower == "content-length"
        elif lower not in HOP_BY_HOP and lower not in named:
            forwarded.append((name, value))
    if not length:
        aiohttp_sends = caller_length or head.method not in _AIOHTTP_NO_LENGTH
        sent = head.method not in NO_LENGTH_WHEN_EMPTY
        if aiohttp_sends and not sent:
            forwarded.append(("Content-Length", "0"))
    return forwarded


def encode_answer(response: Response, keep_alive: bool, date: str) -> bytes:
    """The upstream's answer for the caller: its status, reason and headers minus the
    hop-by-hop ones, its body framed by Content-Length (as aiohttp would not: it streams)."""
    headers = response.headers
    named = connection_named(headers.items())
    body = response.body
    status = response.status
    lines = [f"HTTP/1.1 {status} {response.reason}"]
    no_body = status in NO_BODY_STATUSES
    for name, value in headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in named or (lower == "content-length" and status != 304):
            continue  # a 304's Content-Length describes the resource, and aiohttp keeps it
        lines.append(f"{name}: {value}")
    if no_body:
        body = b""
    else:
        lines.append(f"Content-Length: {len(body)}")
        if body and "Content-Type" not in headers:
            lines.append("Content-Type: application/octet-stream")  # as aiohttp sets it
    if "Date" not in headers:
        lines.append(f"Date: {date}")
    if not keep_alive:
        lines.append("Connection: close")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1") + body

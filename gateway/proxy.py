"""A streaming reverse proxy: request and response bodies flow through without buffering.

Status, headers and body pass unchanged except the hop-by-hop headers (RFC 9110 section 7.6.1),
which describe one connection and must not be forwarded. An answer longer than
`max_response_bytes` is refused with 502 when its length is declared, and cut off (the
connection to the caller aborted, so it cannot take it for whole) when it is not. The 502s the
proxy makes itself are marked (`connectors.core.gateway_answers`), so the queue worker can tell
an answer too large (final) and a timeout (`retry_on_timeout`) from a function's own 502.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from connectors.core.gateway_answers import ProxyError, marked
from connectors.core.invoker import HOP_BY_HOP
from gateway.metrics import GatewayMetrics

log = logging.getLogger("ferry.gateway")

CHUNK = 64 * 1024


class AnswerTooLarge(Exception):
    """The upstream's answer went past `max_response_bytes` after its status line was sent."""


class ReverseProxy:
    def __init__(
        self, metrics: GatewayMetrics, *, read_timeout: float, max_response_bytes: int
    ) -> None:
        self.metrics = metrics
        self.read_timeout = read_timeout
        self.max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=10, sock_read=self.read_timeout
                ),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding", "Accept"),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(self, request: web.Request, target: str) -> web.StreamResponse:
        """Send `request` to `target` (a full URL) and stream the answer back."""
        headers = _forwardable(request.headers)
        headers.pop("Host", None)
        data = request.content if request.can_read_body else None
        response: web.StreamResponse | None = None
        try:
            async with self.session.request(
                request.method,
                target,
                headers=headers,
                data=data,
                allow_redirects=False,
            ) as upstream:
                limit = self.max_response_bytes
                if (upstream.content_length or 0) > limit:
                    return self._too_large(request, target)
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                response.headers.update(_forwardable(upstream.headers))
                await response.prepare(request)
                sent = 0
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    sent += len(chunk)
                    if sent > limit:
                        self._too_large(request, target)
                        raise AnswerTooLarge(target)  # aiohttp aborts the caller's connection
                    await response.write(chunk)
                await response.write_eof()
                self.metrics.proxied.inc(str(upstream.status))
                return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.proxied.inc("502")
            log.warning("proxy %s %s failed: %s", request.method, target, exc or type(exc).__name__)
            if response is not None and response.prepared:
                raise  # the status line is already out: abort the connection
            # aiohttp's read timeout is a TimeoutError too; one while connecting means the
            # function never had the call
            timed_out = isinstance(exc, TimeoutError) and not isinstance(
                exc, aiohttp.ConnectionTimeoutError
            )
            return web.Response(
                status=502,
                text=f"upstream {target} unreachable: {type(exc).__name__}: {exc}\n",
                headers=marked(ProxyError.TIMEOUT if timed_out else ProxyError.UNREACHABLE),
            )

    def _too_large(self, request: web.Request, target: str) -> web.Response:
        self.metrics.proxied.inc("502")
        reason = f"response larger than max_response_bytes ({self.max_response_bytes} bytes)"
        log.warning("proxy %s %s refused: %s", request.method, target, reason)
        return web.Response(
            status=502, text=f"upstream {target}: {reason}\n", headers=marked(ProxyError.TOO_LARGE)
        )


def connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    """The header names a `Connection` header lists (hop-by-hop for this one connection)."""
    return {
        token.strip(" \t").lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }


def _forwardable(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    named = connection_named(headers.items())
    return CIMultiDict(
        (k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP and k.lower() not in named
    )

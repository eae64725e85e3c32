"""Calls one function through the gateway and reports what happened.

The invoker never raises for a function or network failure: every attempt becomes an
`InvocationResult`, and `RetryPolicy.decide` (via `InvocationResult.outcome`) says whether it
is a success, a retry after a delay, or a final failure.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from multidict import CIMultiDict, CIMultiDictProxy

from connectors.core import tracing
from connectors.core.frozen import fields_at_once
from connectors.core.gateway import GatewayClient
from connectors.core.gateway_answers import ProxyError, proxy_error
from connectors.core.http1 import (
    BodySourceError,
    HttpError,
    InvalidRequest,
    Response,
    ResponseTooLarge,
    StreamedBody,
)
from connectors.core.retry import SUCCEEDED, Outcome, RetryPolicy, Verdict, parse_retry_after
from connectors.core.version import USER_AGENT

# Headers that describe one hop of a connection, not the request (RFC 9110, 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# What is never copied onto a new request: hop-by-hop, and what the client library rebuilds.
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length"}
# What an invocation drops from the caller's headers: ferry sets its own User-Agent. The
# caller's Authorization passes through unchanged; the gateway's admin credentials never go
# with an invocation (they are for /system/* alone, see GatewayClient.system_get).
REPLACED_ON_INVOKE = NOT_FORWARDED | {"user-agent"}

if TYPE_CHECKING:
    from opentelemetry.trace import Span

UNREACHABLE_STATUS = 503
GATEWAY_MADE_STATUS = 502  # the status of the answers ferry's gateway makes itself
PRINTED_BODY_BYTES = 4096  # print_request_body shows at most this much of a body

log = logging.getLogger("ferry.invoker")


@fields_at_once
@dataclass(frozen=True)
class InvocationRequest:
    """One call to make: `{method} {gateway}/function/{function}{path}?{query}`."""

    function: str
    body: bytes | StreamedBody = b""
    method: str = "POST"
    path: str = ""
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    asynchronous: bool = False

    def url_path(self) -> str:
        target = function_route(self.function, self.asynchronous)
        if self.path:
            target += self.path if self.path.startswith("/") else "/" + self.path
        return f"{target}?{self.query}" if self.query else target


@functools.lru_cache(maxsize=4096)
def function_route(function: str, asynchronous: bool) -> str:
    """`/function/NAME` (or `/async-function/NAME`), the name quoted: the same few functions
    are called for every message, so each is quoted once."""
    prefix = "/async-function/" if asynchronous else "/function/"
    return prefix + quote(function, safe=".-_~")


@fields_at_once
@dataclass(frozen=True)
class InvocationResult:
    """What one attempt produced. `status` is None when the function could not be reached."""

    function: str
    status: int | None
    attempt: int
    duration: float
    body: bytes = b""
    headers: CIMultiDictProxy[str] = field(default_factory=lambda: CIMultiDictProxy(CIMultiDict()))
    error: str = ""
    # Retrying cannot help: the request cannot be sent as HTTP, or the answer is larger than
    # max_response_bytes (the function would give the same answer again).
    final: bool = False
    timed_out: bool = False  # ferry stopped waiting; the function may still be running

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def reported_status(self) -> int:
        """The status callbacks and metrics show: 503 when the function was unreachable."""
        return UNREACHABLE_STATUS if self.status is None else self.status

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))

    def outcome(self, policy: RetryPolicy) -> Outcome:
        if self.final:
            return Outcome(Verdict.FAILED, reason=f"{self.error} (not retried)")
        if self.ok:  # before Retry-After is parsed: a success has no use for it
            return SUCCEEDED
        return policy.decide(
            status=self.status,
            attempt=self.attempt,
            retry_after=self.retry_after,
            error=self.error,
            timed_out=self.timed_out,
        )


class Invoker:
    """Makes calls through one `GatewayClient`; bounded by the client's `upstream_timeout`."""

    def __init__(self, client: GatewayClient) -> None:
        self.client = client

    def invoke(
        self, request: InvocationRequest, *, attempt: int = 1
    ) -> Coroutine[Any, Any, InvocationResult]:
        """One attempt of `request`: the caller's hop-by-hop headers and User-Agent dropped,
        ferry's User-Agent added. (A plain method returning `call`'s coroutine: one coroutine
        fewer per message.)"""
        headers = [
            (name, value)
            for name, value in request.headers
            if name.lower() not in REPLACED_ON_INVOKE
        ]
        headers.append(("User-Agent", USER_AGENT))
        if self.client.settings.print_request_body:
            print_request_body(request.function, request.body)
        return self.call(
            request.function,
            self.client.url(request.url_path()),
            headers,
            request.body,
            method=request.method,
            attempt=attempt,
        )

    async def call(
        self,
        function: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | StreamedBody,
        *,
        method: str = "POST",
        attempt: int = 1,
        header_lines: str = "",
    ) -> InvocationResult:
        """One attempt with the headers exactly as they go (nothing filtered or added): for
        callers that build them themselves, as the connectors' `Controller` does, which
        passes those every call of a function carries already written (`header_lines`)."""
        span = _function_span(function, method, url, headers, attempt) if tracing.ENABLED else None
        started = time.monotonic()
        final = timed_out = False
        try:
            response = await self.client.http.request(
                method,
                url,
                headers=headers,
                body=body,
                timeout=self.client.settings.upstream_timeout,
                header_lines=header_lines,
            )
            if response.status == GATEWAY_MADE_STATUS:
                result = _gateway_made(function, response, attempt, time.monotonic() - started)
            else:
                result = InvocationResult(  # by position: made for every call
                    function,
                    response.status,
                    attempt,
                    time.monotonic() - started,
                    response.body,
                    response.headers,
                )
            if span is not None:
                _answered(span, result)
            return result
        except TimeoutError:
            error = f"timed out after {self.client.settings.upstream_timeout:g}s"
            timed_out = True
        except ResponseTooLarge as exc:
            error, final = f"{exc} (the function answered {exc.status})", True
        except BodySourceError as exc:
            error = f"the request body could not be read: {exc}"
        except HttpError as exc:
            error = f"could not reach the gateway: {exc}"
        except InvalidRequest as exc:
            error, final = f"the request cannot be sent: {exc}", True
        result = InvocationResult(
            function=function,
            status=None,
            attempt=attempt,
            duration=time.monotonic() - started,
            error=error,
            final=final,
            timed_out=timed_out,
        )
        if span is not None:
            _answered(span, result)
        return result


def _function_span(
    function: str, method: str, url: str, headers: list[tuple[str, str]], attempt: int
) -> Span:
    """The CLIENT span of one function call (tracing on); the call carries its context."""
    from connectors.core import spans

    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "faas.invoked_name": function,
        "ferry.attempt": attempt,
    }
    return spans.start_client(f"invoke {function}", url, headers, attributes)


def _answered(span: Span, result: InvocationResult) -> None:
    from connectors.core import spans

    spans.answered(span, result.status, span_error(result))


def span_error(result: InvocationResult) -> str:
    """The error a span may show: a request that could not be sent names its URL (with the
    caller's query), so only the reason's first part goes into a span."""
    return result.error.split(":", 1)[0] if result.final else result.error


def _gateway_made(
    function: str, response: Response, attempt: int, duration: float
) -> InvocationResult:
    """A 502, which ferry's gateway may have made itself (`gateway_answers`): an answer over
    its `max_response_bytes` is final, its `upstream_timeout` is a timeout (for
    `retry_on_timeout`); any other 502 follows `retry_http_codes`."""
    error = proxy_error(response.headers)
    final = error is ProxyError.TOO_LARGE
    timed_out = error is ProxyError.TIMEOUT
    reason = ""
    if final:
        reason = "the gateway refused the answer: larger than its max_response_bytes (502)"
    elif timed_out:
        reason = "the gateway's upstream_timeout ran out (502)"
    return InvocationResult(
        function=function,
        status=response.status,
        attempt=attempt,
        duration=duration,
        body=b"" if final else response.body,
        headers=response.headers,
        error=reason,
        final=final,
        timed_out=timed_out,
    )


def print_request_body(function: str, body: bytes | StreamedBody) -> None:
    """Log (the start of) a request body, for `print_request_body`."""
    if isinstance(body, StreamedBody):  # a large body is streamed, never held here
        log.info("%s request body: (%d bytes, streamed)", function, body.length)
        return
    shown = body[:PRINTED_BODY_BYTES].decode("utf-8", "replace")
    more = len(body) - PRINTED_BODY_BYTES
    log.info(
        "%s request body: %s%s",
        function,
        shown,
        f"... ({more} more bytes)" if more > 0 else "",
    )

"""Delivers a function's result to the caller's `X-Callback-Url`.

A callback is sent once per final outcome, with bounded retries of its own (tenacity), through
its own connection pool and concurrency limit, so a slow receiver never holds an invocation
slot. Targets pass the SSRF guard (`urlguard`) and, with a secret set, carry an HMAC-SHA256
signature of `{timestamp}.{body}` in `X-Ferry-Signature: t=<unix seconds>,v1=<hex>`.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from connectors.core import tracing
from connectors.core.config import CallbackSettings
from connectors.core.errors import CallbackRefused
from connectors.core.frozen import fields_at_once
from connectors.core.http1 import (
    Http1Client,
    HttpError,
    InvalidRequest,
    ResponseTooLarge,
    as_sent_text,
)
from connectors.core.invoker import NOT_FORWARDED, InvocationResult
from connectors.core.targets import short_id
from connectors.core.urlguard import CallbackPolicy, GuardedResolver, shown_url
from connectors.core.version import USER_AGENT

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Ferry-Signature"
# Why ferry gave up on a call without retrying (e.g. "response larger than
# max_response_bytes"), sent with the callback of such a final failure.
ERROR_HEADER = "X-Ferry-Error"
RECEIVER_ANSWER_BYTES = 64 * 1024  # a receiver's answer is not used: read little of it
FIRST_RETRY_WAIT = 0.2  # seconds; later waits double up to callback_max_wait
SET_HERE = frozenset({"user-agent", SIGNATURE_HEADER.lower()})  # added by the sender
RETRYABLE_CALLBACK_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class CallbackOutcome(enum.Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"  # the receiver answered with a status that is not retried
    FAILED = "failed"  # attempts exhausted
    REFUSED = "refused"  # the policy does not allow the target


@fields_at_once
@dataclass(frozen=True)
class Callback:
    url: str
    body: bytes
    headers: list[tuple[str, str]]  # as `result_headers` makes them; the sender adds SET_HERE
    call_id: str
    function: str


SUMMARY_HEADERS = (
    "X-Call-Id",
    "X-Function-Name",
    "X-Function-Status",
    "X-Duration-Seconds",
    "X-Start-Time",
    "X-Retry",
    "X-Retry-Max",
)
# Of the function's own headers, these never reach the callback: hop-by-hop ones and what ferry
# sets itself (here, or in the sender). The body is passed on exactly as the function sent it,
# so its Content-Encoding goes with it.
_NOT_FROM_FUNCTION = (
    NOT_FORWARDED | SET_HERE | {h.lower() for h in SUMMARY_HEADERS} | {ERROR_HEADER.lower()}
)


def result_headers(
    result: InvocationResult,
    *,
    call_id: str,
    start_time: str,
    retry_max: int,
) -> list[tuple[str, str]]:
    """The headers of DESIGN.md: the function's own (passed on as the same bytes) plus
    ferry's `X-*` summary."""
    headers = [
        (k, as_sent_text(v))
        for k, v in result.headers.items()
        if k.lower() not in _NOT_FROM_FUNCTION
    ]
    headers += zip(
        SUMMARY_HEADERS,
        (
            call_id,
            result.function,
            str(result.reported_status),
            f"{result.duration:.6f}",
            start_time,
            str(max(result.attempt - 1, 0)),
            str(retry_max),
        ),
        strict=True,
    )
    if result.final and result.error:
        headers.append((ERROR_HEADER, result.error))
    return headers


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, tolerance: float = 300.0, now: float | None = None
) -> bool:
    """True when `header` is a valid, fresh signature of `body` (for callback receivers)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


class _RetryableCallbackError(Exception):
    pass


class CallbackSender:
    """Sends callbacks over its own connections, at most `concurrency` POSTs at once."""

    def __init__(self, settings: CallbackSettings, *, concurrency: int = 64) -> None:
        self.settings = settings
        self.policy = CallbackPolicy.from_settings(settings)
        self._concurrency = concurrency
        self._http: Http1Client | None = None

    def check(self, url: str) -> None:
        """Raise CallbackRefused if `url` may never be called back."""
        self.policy.check_url(url)

    @property
    def http(self) -> Http1Client:
        if self._http is None:
            self._http = Http1Client(
                limit=self._concurrency,
                resolver=GuardedResolver(self.policy),
                max_response_bytes=RECEIVER_ANSWER_BYTES,
            )
        return self._http

    async def deliver(self, callback: Callback) -> CallbackOutcome:
        """POST the callback with bounded retries; never raises for a delivery problem."""
        try:
            return await self._deliver(callback)
        except CallbackRefused as exc:  # by the URL's text, or by the addresses it resolves to
            log.warning("callback for call %s refused: %s", short_id(callback.call_id), exc)
            return CallbackOutcome.REFUSED

    async def _deliver(self, callback: Callback) -> CallbackOutcome:
        self.check(callback.url)
        try:
            status = await self._post(callback)  # the common case: one attempt, no retry state
        except InvalidRequest as exc:
            log.warning("callback for call %s cannot be sent: %s", short_id(callback.call_id), exc)
            return CallbackOutcome.REFUSED
        except _RetryableCallbackError as first_error:
            if self.settings.callback_max_attempts == 1:
                self._log_failure(callback, 1, first_error)
                return CallbackOutcome.FAILED
            try:
                status = await self._retry(callback)
            except RetryError as exc:
                attempts = self.settings.callback_max_attempts
                self._log_failure(callback, attempts, exc.last_attempt.exception())
                return CallbackOutcome.FAILED
        if 200 <= status < 400:
            if log.isEnabledFor(logging.DEBUG):  # the arguments cost more than the check
                log.debug("callback for call %s delivered (%d)", short_id(callback.call_id), status)
            return CallbackOutcome.DELIVERED
        log.warning(
            "callback for call %s to %s rejected with %d",
            short_id(callback.call_id),
            shown_url(callback.url),
            status,
        )
        return CallbackOutcome.REJECTED

    async def _retry(self, callback: Callback) -> int:
        """The attempts after the first, with jittered exponential back-off."""
        await asyncio.sleep(random.uniform(0, FIRST_RETRY_WAIT))
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.settings.callback_max_attempts - 1),
            wait=wait_random_exponential(
                multiplier=FIRST_RETRY_WAIT, max=self.settings.callback_max_wait
            ),
            retry=retry_if_exception_type(_RetryableCallbackError),
            reraise=False,
        ):
            with attempt:
                return await self._post(callback)
        raise AssertionError("unreachable: tenacity either returns or raises RetryError")

    def _log_failure(self, callback: Callback, attempts: int, error: BaseException | None) -> None:
        log.warning(
            "callback for call %s to %s failed after %d attempts: %s",
            short_id(callback.call_id),
            shown_url(callback.url),
            attempts,
            error,
        )

    async def _post(self, callback: Callback) -> int:
        headers = [*callback.headers, ("User-Agent", USER_AGENT)]
        if self.settings.callback_signing_secret:
            signature = sign(self.settings.callback_signing_secret, callback.body, int(time.time()))
            headers.append((SIGNATURE_HEADER, signature))
        span = _callback_span(callback, headers) if tracing.ENABLED else None
        status, failure = 0, ""
        try:
            response = await self.http.request(
                "POST",
                callback.url,
                headers=headers,
                body=callback.body,
                timeout=self.settings.callback_timeout,
            )
            status = response.status
        except TimeoutError:
            failure = f"timed out after {self.settings.callback_timeout:g}s"
        except ResponseTooLarge as exc:  # only the receiver's (unused) answer was cut short
            status = exc.status
        except HttpError as exc:
            failure = str(exc)
        if span is not None:
            _answered(span, status or None, failure)
        if failure:
            raise _RetryableCallbackError(failure)
        if status in RETRYABLE_CALLBACK_STATUSES:
            raise _RetryableCallbackError(f"receiver answered {status}")
        return status

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def _callback_span(callback: Callback, headers: list[tuple[str, str]]) -> Span:
    """The CLIENT span of one callback POST (tracing on): the receiver gets its context. Only
    the receiver's host and port are recorded; its path and query may hold secrets."""
    from connectors.core import spans

    attributes = {"http.request.method": "POST", "faas.invoked_name": callback.function}
    return spans.start_client(f"callback {callback.function}", callback.url, headers, attributes)


def _answered(span: Span, status: int | None, failure: str) -> None:
    from connectors.core import spans

    spans.answered(span, status, failure)

"""When and how long to wait before trying a function again.

`RetryPolicy` is the process-wide policy; `RetryPolicy.for_function` lays a function's
`com.openfaas.retry.*` annotations over it. `RetryPolicy.decide` turns one attempt's result into
an `Outcome` (success, retry after a delay, or final failure) that each source maps onto its
broker: JetStream `nak(delay)`, SQS visibility, or an in-process wait for Kafka.
"""

from __future__ import annotations

import dataclasses
import email.utils
import enum
import functools
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from connectors.core.config import RetrySettings
from connectors.core.durations import parse_duration
from connectors.core.numbers import ascii_int
from connectors.core.settings import status_codes

log = logging.getLogger(__name__)

ANNOTATION_ATTEMPTS = "com.openfaas.retry.attempts"
ANNOTATION_CODES = "com.openfaas.retry.codes"
ANNOTATION_MIN_WAIT = "com.openfaas.retry.min_wait"
ANNOTATION_MAX_WAIT = "com.openfaas.retry.max_wait"


class Verdict(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """What to do with a message after one attempt."""

    verdict: Verdict
    delay: float = 0.0
    reason: str = ""
    exhausted: bool = False  # a failure because the attempts ran out

    @property
    def final(self) -> bool:
        return self.verdict is not Verdict.RETRY


SUCCEEDED = Outcome(Verdict.SUCCESS)  # one value for every success: nothing else to say


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial_wait: float
    max_wait: float
    codes: frozenset[int]
    retry_on_timeout: bool = False

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_retry_attempts,
            initial_wait=settings.initial_retry_wait,
            max_wait=settings.max_retry_wait,
            codes=settings.retry_http_codes,
            retry_on_timeout=settings.retry_on_timeout,
        )

    def for_function(self, annotations: Mapping[str, str]) -> RetryPolicy:
        """This policy with the function's retry annotations laid over it.

        A malformed annotation is logged and ignored: it must not fail the invocation. The
        result is kept for each set of values (the queue worker asks once per message, and
        the front door puts every annotation of the function in each): worked out, and a
        malformed value warned of, once rather than for every call.
        """
        if not annotations:
            return self
        raw = tuple(map(annotations.get, _PARSERS))
        if raw == _NO_RETRY_ANNOTATIONS:
            return self
        if sum(map(len, filter(None, raw))) <= KEPT_ANNOTATION_CHARS:
            return _laid_over(self, raw)
        return self._with(raw)  # a long value is not kept (nor hashed for every call)

    def _with(self, raw: tuple[str | None, ...]) -> RetryPolicy:
        """This policy with the four annotations' values (None where absent) laid over it."""
        changes: dict[str, object] = {}
        for (key, (attr, parse)), value in zip(_PARSERS.items(), raw, strict=True):
            if value is None:
                continue
            try:
                changes[attr] = parse(value)
            except ValueError as exc:
                log.warning("ignoring annotation %s=%r: %s", key, value, exc)
        if not changes:
            return self
        policy = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        if policy.initial_wait > policy.max_wait:
            policy = dataclasses.replace(policy, max_wait=policy.initial_wait)
        return policy

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential back-off after attempt number `attempt` (1-based)."""
        # the exponent is capped: 2**1024 is past any float, and a function may allow more
        # attempts than that (2**62 times even a nanosecond is over a century)
        ceiling = min(self.max_wait, self.initial_wait * (2 ** min(max(attempt - 1, 0), 62)))
        return (rng or random).uniform(0.0, ceiling)

    def is_retryable_status(self, status: int) -> bool:
        return status in self.codes

    def decide(
        self,
        *,
        status: int | None,
        attempt: int,
        retry_after: float | None = None,
        error: str = "",
        timed_out: bool = False,
    ) -> Outcome:
        """Classify one attempt. `status` is None when the function could not be reached.

        `timed_out` means ferry's own wait (`upstream_timeout`) ran out: the function may still
        be running, so it is invoked again only with `retry_on_timeout`. A 502 or 504 from the
        gateway is a status like any other and follows `codes`.
        """
        if status is not None and 200 <= status < 300:
            return SUCCEEDED
        if timed_out and not self.retry_on_timeout:
            return Outcome(
                Verdict.FAILED,
                reason=f"{error or 'timed out'}; the function may still be running, so it is "
                "not invoked again (retry_on_timeout=false)",
            )
        retryable = status is None or self.is_retryable_status(status)
        reason = error or f"function returned {status}"
        if not retryable:
            return Outcome(Verdict.FAILED, reason=f"{reason} (not retried)")
        if attempt >= self.max_attempts:
            return Outcome(
                Verdict.FAILED, reason=f"{reason} after {attempt} attempts", exhausted=True
            )
        delay = self.backoff(attempt)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return Outcome(Verdict.RETRY, delay=delay, reason=reason)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


# each retry annotation: the policy field it sets, and how its text is read
_PARSERS: dict[str, tuple[str, Callable[[str], object]]] = {
    ANNOTATION_ATTEMPTS: ("max_attempts", _positive_int),
    ANNOTATION_CODES: ("codes", status_codes),
    ANNOTATION_MIN_WAIT: ("initial_wait", parse_duration),
    ANNOTATION_MAX_WAIT: ("max_wait", parse_duration),
}
_NO_RETRY_ANNOTATIONS = (None, None, None, None)
POLICIES_KEPT = 256  # policies kept for the annotation values met (the least used go)
KEPT_ANNOTATION_CHARS = 256  # longer values are worked out each time rather than kept
_laid_over = functools.lru_cache(maxsize=POLICIES_KEPT)(RetryPolicy._with)


# A function's Retry-After is obeyed up to this: a longer one (or a date far ahead) waits this
# long, so an answer cannot park a call or pause its function for ever.
MAX_RETRY_AFTER_SECONDS = 300.0
MAX_RETRY_AFTER_CHARS = 64  # an HTTP date is 29


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), at most
    MAX_RETRY_AFTER_SECONDS; None if there is none or it is neither."""
    if not value:
        return None
    value = value.strip()
    if len(value) > MAX_RETRY_AFTER_CHARS:
        return None
    seconds = ascii_int(value, MAX_RETRY_AFTER_CHARS)
    if seconds is not None:
        return float(min(seconds, MAX_RETRY_AFTER_SECONDS))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when is None:
        return None
    wait = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, wait), MAX_RETRY_AFTER_SECONDS)

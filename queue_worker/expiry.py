"""The worker's half of delayed calls and expiry: never early, never stale.

A delayed call reaches the worker only when NATS fires its schedule (`asyncq.schedule`), so
the worker only checks: a message whose `Ferry-Not-Before` is still ahead (a server clock
ahead of ours, a copied message) goes back with `nak(delay)` without taking a slot.

A call expires at the earliest of: its own `Ferry-Expires-At` (X-Expires-At, X-Max-Age), its
function's annotation `ferry.max_age`, and the worker's `max_event_age`; the two ages count
from when the call was due (its not-before time, else its `X-Start-Time`). An expired call is
not invoked; a retry that would come after the expiry is not made.
"""

from __future__ import annotations

import functools
import time

from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from asyncq.codec import QueueRequest
from asyncq.timing import EXPIRES_AT, NOT_BEFORE, header_seconds
from connectors.core.durations import parse_duration
from connectors.core.numbers import ascii_int
from ledger.entries import rfc3339
from queue_worker.delivery_numbers import delivered

MAX_AGE_ANNOTATION = "ferry.max_age"
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class DelayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.waiting = Gauge(
            "queue_worker_delayed_calls_waiting",
            "Delayed calls stored on the request stream whose time has not come",
            registry=registry,
        )
        self.lateness = Histogram(
            "queue_worker_delayed_call_lateness_seconds",
            "How long after its not-before time a delayed call reached a worker",
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.expired = Counter(
            "queue_worker_calls_expired_total",
            "Calls not invoked (or not retried) because they had expired",
            ["function"],
            registry=registry,
        )


class CallClock:
    """When a message may run and until when."""

    def __init__(self, max_event_age: float, registry: CollectorRegistry) -> None:
        self.max_event_age = max_event_age
        self.metrics = DelayMetrics(registry)

    def wait(self, msg: Msg, now: float | None = None) -> float | None:
        """Seconds until a message is due, or None if it may run now (its lateness counted
        on its first delivery)."""
        headers = msg.headers
        if not headers or NOT_BEFORE not in headers:
            return None
        not_before = header_seconds(headers, NOT_BEFORE)
        if not_before is None:
            return None
        now = time.time() if now is None else now
        if not_before > now:
            return not_before - now
        if delivered(msg) == 1:
            self.metrics.lateness.observe(now - not_before)
        return None

    def expiry(self, msg: Msg, request: QueueRequest) -> tuple[float, str] | None:
        """The time the call expires and what set it, or None if it never does."""
        found: tuple[float, str] | None = None
        own = header_seconds(msg.headers, EXPIRES_AT)
        if own is not None:
            found = (own, "its X-Expires-At or X-Max-Age")
        ages = []
        annotated = request.annotations.get(MAX_AGE_ANNOTATION)
        if annotated is not None and (age := _age(annotated)) is not None:
            ages.append((age, f"{MAX_AGE_ANNOTATION} {annotated}"))
        if self.max_event_age > 0:
            ages.append((self.max_event_age, f"max_event_age {self.max_event_age:g}s"))
        if ages:
            due = _due(msg, request)
            for age, what in ages:
                if due is not None and (found is None or due + age < found[0]):
                    found = (due + age, what)
        return found

    def expired(
        self, msg: Msg, request: QueueRequest, at: float | None = None, what: str = "not invoked"
    ) -> str | None:
        """Why the call is expired at `at` (default now), or None if it is not."""
        if not self.max_event_age and MAX_AGE_ANNOTATION not in request.annotations:
            headers = msg.headers
            if not headers or EXPIRES_AT not in headers:
                return None  # nothing can expire it: the common case, kept cheap
        found = self.expiry(msg, request)
        if found is None:
            return None
        moment = time.time() if at is None else at
        if moment < found[0]:
            return None
        return f"expired at {rfc3339(found[0])} ({found[1]}); {what}"


def _due(msg: Msg, request: QueueRequest) -> float | None:
    not_before = header_seconds(msg.headers, NOT_BEFORE)
    if not_before is not None:
        return not_before
    start = ascii_int(request.start_time, 20)
    return None if start is None else start / 1e9


@functools.lru_cache(maxsize=256)
def _age(text: str) -> float | None:
    """An annotation's duration; None (no expiry) for one that is not a positive duration."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        return None
    return seconds if seconds > 0 else None

"""The queue worker's part of tracing: a `process` (CONSUMER) span per delivery, and what
happened to it. Called only when tracing is on; OpenTelemetry is imported only then.

The span's parent (and link) is the front door's `send` span, whose context the queued call
carries in its `Traceparent` header; a call queued without one starts a trace of its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from asyncq.codec import QueueRequest
from connectors.core.invoker import InvocationResult, span_error
from connectors.core.numbers import ascii_int
from connectors.core.retry import Outcome, Verdict
from queue_worker.delivery_numbers import delivered

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from connectors.core.spans import Scope

_OUTCOMES = {Verdict.SUCCESS: "succeeded", Verdict.RETRY: "retry", Verdict.FAILED: "failed"}


def process_span(msg: Msg, request: QueueRequest, subject: str, durable: str) -> Scope:
    """The current span for this delivery, until the worker ends it."""
    from connectors.core import spans

    attributes: dict[str, str | int | float] = {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.consumer.group.name": durable,
        "messaging.message.id": request.call_id,
        "faas.invoked_name": request.function,
        "ferry.attempt": delivered(msg),
    }
    wait = queue_wait(request.start_time, time.time_ns())
    if wait is not None:
        attributes["ferry.queue_wait_seconds"] = wait
    return spans.start_process(request.function, request.header, attributes)


def queue_wait(start_time: str, now_ns: int) -> float | None:
    """Seconds since the call was queued (its `X-Start-Time`, Unix ns): for a retry, this
    includes the earlier attempts and their back-off."""
    queued = ascii_int(start_time, 20)
    if queued is None:
        return None
    return round(max(now_ns - queued, 0) / 1e9, 6)


def attempt_outcome(result: InvocationResult, outcome: Outcome) -> None:
    """Record an attempt's outcome on the current process span; a retried or failed attempt
    marks it failed."""
    from connectors.core import spans

    verdict = outcome.verdict
    error = ""
    if verdict is not Verdict.SUCCESS:
        error = span_error(result) or outcome.reason or f"status {result.reported_status}"
    spans.outcome(
        _OUTCOMES[verdict],
        {"ferry.attempt": result.attempt, "ferry.function_status": result.reported_status},
        error,
    )


def unexpected_outcome(outcome: Outcome, reason: str) -> None:
    """An attempt that ended in an error nobody foresaw (retried, or given up)."""
    from connectors.core import spans

    spans.outcome(_OUTCOMES[outcome.verdict], {}, reason)


def cancelled_outcome() -> None:
    """A call cancelled through the ledger: acked without being run."""
    from connectors.core import spans

    spans.outcome("cancelled", {})
    spans.note("ferry.cancelled")


def note(name: str, **attributes: str | int) -> None:
    """An event on the current process span (dead letter, cancel, hand-back)."""
    from connectors.core import spans

    spans.note(name, attributes)

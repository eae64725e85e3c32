"""Stale events: a connector's `max_event_age`, checked against the event's own timestamp
(a Kafka record's, an SQS message's) before any function is invoked.

A stale event is not delivered: every function subscribed to it gets a failed delivery with
status 410 and a reason starting `expired`, which the connector records as dead like any
other failure (so the source position moves on), and it is counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from connectors.core.controller import Controller
from connectors.core.delivery import Delivery, Event
from connectors.core.invoker import InvocationResult
from connectors.core.retry import Outcome, Verdict
from connectors.core.topicmap import FunctionInfo

log = logging.getLogger("ferry.connector")

EXPIRED_STATUS = 410


def staleness(max_event_age: float, event_time: float | None, now: float) -> str | None:
    """Why an event that happened at `event_time` (Unix seconds) is too old to deliver, or
    None (also when there is no limit or no time)."""
    if max_event_age <= 0 or event_time is None or event_time <= 0:
        return None
    age = now - event_time
    if age <= max_event_age:
        return None
    return f"expired: the event is {age:.1f}s old, over max_event_age {max_event_age:g}s"


def expired_deliveries(
    controller: Controller,
    event: Event,
    functions: Sequence[FunctionInfo],
    reason: str,
) -> Sequence[Delivery]:
    """A failed delivery per function in `functions`, none of them invoked; counted once."""
    controller.metrics.expired.inc(event.topic)
    if functions:
        log.warning("%s: %s; not delivered", event.topic, reason)
    return [
        Delivery(
            event,
            function,
            InvocationResult(function.qualified, EXPIRED_STATUS, 0, 0.0, error=reason, final=True),
            Outcome(Verdict.FAILED, reason=reason),
        )
        for function in functions
    ]

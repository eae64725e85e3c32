"""What a source hands the `Controller` and gets back, and how a delivery ends without one.

An `Event` is one message addressed by topic; a `Delivery` is one function's final (or, per
attempt, latest) outcome for it. `Abandoned` and `NotStarted` say the source stopped before
there was an outcome, so the event must not be acknowledged; `unexpected_error` is the reason
a failure nothing foresaw carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from connectors.core.errors import FerryError
from connectors.core.frozen import fields_at_once
from connectors.core.invoker import InvocationResult
from connectors.core.retry import Outcome, Verdict
from connectors.core.topicmap import FunctionInfo


@fields_at_once
@dataclass(frozen=True)
class Event:
    """One message from a source, addressed by topic. `headers` are the source's own
    (`X-Kafka-*`, `X-SQS-*`, `X-Cron-*`): they go with the call as they are."""

    topic: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    call_id: str = ""


@fields_at_once
@dataclass(frozen=True)
class Delivery:
    """The outcome of one function for one event (after retries, when in-process)."""

    event: Event
    function: FunctionInfo
    result: InvocationResult
    outcome: Outcome
    returns: int = 0  # times the limiter sent the call back in line (no attempt used)

    @property
    def ok(self) -> bool:
        return self.outcome.verdict is Verdict.SUCCESS


UNEXPECTED_ERROR_CHARS = 300  # of an unforeseen error's text kept in a reason


def unexpected_error(exc: BaseException) -> str:
    """A reason for an error nothing foresaw: its type and text, bounded, and printable as
    UTF-8 (its text may quote input, e.g. a lone surrogate a header or log cannot hold)."""
    text = f"unexpected error: {type(exc).__name__}: {exc}"[:UNEXPECTED_ERROR_CHARS]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Abandoned(FerryError):
    """Retries were cut short because the source is stopping: the event has no final
    outcome and must not be acknowledged (the broker delivers it again)."""


class NotStarted(Abandoned):
    """The source stopped before the attempt began (it waited for a free `max_inflight`
    slot): the function was not called this time."""


class ResponseSubscriber(Protocol):
    """Told of every final delivery; must not block (queue work of its own if slow)."""

    def response(self, delivery: Delivery) -> None: ...

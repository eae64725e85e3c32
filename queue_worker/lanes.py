"""One lane per function with calls waiting or running: everything the fair scheduler knows
about that function in one object (its place in the fair order, its limits, in flight, what
it has asked JetStream for, its backlog, a pause), and the one place that maps an attempt's
outcome onto it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from connectors.core.aimd import AimdLimit
from connectors.core.function_limits import MAX_FREE_RETURNS as MAX_FREE_RETURNS
from connectors.core.function_limits import MAX_INFLIGHT_ANNOTATION as MAX_INFLIGHT_ANNOTATION
from connectors.core.function_limits import annotated_cap as annotated_cap
from connectors.core.invoker import InvocationResult
from queue_worker.fair_order import Turn

WEIGHT_ANNOTATION = "ferry.weight"
MAX_WEIGHT = 1000.0
REQUESTS_PER_LANE = 4  # pull requests one lane may have outstanding at once


class Fate(Enum):
    """What the lane says about one attempt's outcome."""

    COUNTED = "counted"  # the usual retry policy decides
    RETURNED = "returned"  # overload the limiter caused: back to the queue, no attempt used


def annotated_weight(annotations: Mapping[str, str]) -> float:
    """`ferry.weight` (a positive number, default 1); anything else counts as 1."""
    text = annotations.get(WEIGHT_ANNOTATION)
    if not text:  # the usual case: no exception raised and caught for every call
        return 1.0
    try:
        weight = float(text)
    except ValueError:
        return 1.0
    return min(weight, MAX_WEIGHT) if weight > 0 else 1.0


@dataclass
class Lane:
    subject: str
    durable: str
    inbox: str
    slots: int  # the worker's max_inflight: no lane runs more
    adaptive: bool
    function: str = ""  # learnt from its first message
    turn: Turn = field(default_factory=lambda: Turn("", 1.0, 0))
    limit: AimdLimit = field(init=False)
    cap: int | None = None
    known: bool = False  # a message has shown its annotations (until then: one at a time)
    inflight: int = 0
    asked: int = 0  # messages asked for by its outstanding pull requests, not yet delivered
    # its outstanding pull requests, oldest first: [number, messages still due, sent at]
    requests: collections.deque[list[float]] = field(default_factory=collections.deque)
    backlog: int = 0  # stored on its subject (as last seen), running calls included
    paused_until: float = 0.0
    consumer_ready: bool = False
    creating: bool = False
    active_at: float = field(default_factory=time.monotonic)
    throttled: int = 0  # answers of 429 (or 503 with Retry-After) seen

    def __post_init__(self) -> None:
        self.turn.key = self.subject
        self.limit = AimdLimit(self.slots)

    @property
    def allowed(self) -> int:
        """Calls of this function that may run at once now (one until a message has shown
        its annotations: its cap may be lower than the worker's slots)."""
        if not self.known:
            return 1
        bound = self.limit.allowed if self.adaptive else self.slots
        return min(bound, self.cap) if self.cap is not None else bound

    @property
    def waiting(self) -> int:
        return max(0, self.backlog - self.inflight - self.asked)

    def room(self, now: float, batch_max: int) -> int:
        """How many calls the fair order may give this lane now."""
        if (
            not self.consumer_ready
            or len(self.requests) >= REQUESTS_PER_LANE
            or now < self.paused_until
        ):
            return 0
        room = min(self.allowed - self.inflight - self.asked, self.waiting)
        return min(room, batch_max) if batch_max else room

    def learn(self, function: str, annotations: Mapping[str, str]) -> None:
        """A message of this lane is starting: its annotations set the lane's weight and cap."""
        self.function = function
        self.turn.weight = annotated_weight(annotations)
        cap = annotated_cap(annotations)
        if cap != self.cap or not self.known:
            self.cap = cap
            self.limit.bound(min(self.slots, cap) if cap is not None else self.slots)
        self.known = True

    def delivered(self) -> None:
        """A message of this lane arrived to run: it counts as in flight from now on, so no
        request asks for a message its limit has no room for."""
        self.inflight += 1
        self.active_at = time.monotonic()

    def started(self) -> int:
        """The call is sent; the limiter generation to report its outcome against."""
        return self.limit.generation

    def finished(self) -> None:
        """A call ended (its message is mostly gone: the backlog is read again soon)."""
        self.inflight -= 1
        self.backlog = max(0, self.backlog - 1)
        self.active_at = time.monotonic()

    def outcome(self, result: InvocationResult, generation: int, returns: int) -> Fate:
        """Map an attempt's answer onto the lane: limit, pause, and whether it is counted.

        Called before `finished`, so `inflight` still includes this call."""
        retry_after = result.retry_after if result.status in (429, 503) else None
        overloaded = result.status == 429 or (result.status == 503 and retry_after is not None)
        if result.ok:
            self.limit.succeeded(self.inflight)
            return Fate.COUNTED
        if not overloaded:
            return Fate.COUNTED
        self.throttled += 1
        if retry_after is not None:
            self.paused_until = max(self.paused_until, time.monotonic() + retry_after)
        if not self.adaptive:
            return Fate.COUNTED
        self.limit.dropped(generation, still_running=self.inflight - 1)
        return Fate.RETURNED if returns < MAX_FREE_RETURNS else Fate.COUNTED

    def idle_since(self) -> float | None:
        """When the lane last had work, or None while it has some."""
        if self.inflight or self.asked or self.waiting:
            return None
        return self.active_at


# Headers of a call the limiter sent back to its lane (re-published): the attempts it had used
# before (JetStream's delivery count starts again for the new message) and how often it was
# sent back.
ATTEMPTS_BEFORE = "Ferry-Attempts-Before"
RETURNS = "Ferry-Limiter-Returns"


def header_count(headers: Mapping[str, str] | None, name: str) -> int:
    """A small non-negative count from a message header (0 if missing or malformed)."""
    text = headers.get(name) if headers else None
    if not text:
        return 0
    try:
        return max(0, min(int(text), 1_000_000))
    except ValueError:
        return 0

"""One lane per function with calls waiting or running: everything the fair scheduler knows
about that function in one object (its place in the fair order, its limits, in flight, what
it has asked JetStream for, its backlog, a pause), and the one place that maps an attempt's
outcome onto it.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from nats.aio.msg import Msg

from connectors.core.aimd import AimdLimit
from connectors.core.breaker import (
    FAILURES_ANNOTATION,
    OPEN_FOR_ANNOTATION,
    Breaker,
    BreakerSettings,
    Change,
    annotated_settings,
)
from connectors.core.function_limits import MAX_FREE_RETURNS as MAX_FREE_RETURNS
from connectors.core.function_limits import MAX_INFLIGHT_ANNOTATION as MAX_INFLIGHT_ANNOTATION
from connectors.core.function_limits import annotated_cap as annotated_cap
from connectors.core.invoker import InvocationResult
from queue_worker.fair_order import Turn

log = logging.getLogger("ferry.queue_worker.breaker")

WEIGHT_ANNOTATION = "ferry.weight"
MAX_WEIGHT = 1000.0
REQUESTS_PER_LANE = 4  # pull requests one lane may have outstanding at once


# What `Lane.admits` says of a delivered call.
REFUSED, RUN, PROBE = 0, 1, 2


class Fate(Enum):
    """What the lane says about one attempt's outcome."""

    COUNTED = "counted"  # the usual retry policy decides
    RETURNED = "returned"  # overload the limiter caused: back to the queue, no attempt used
    HELD = "held"  # the function is down and its breaker open: back to the queue, no attempt used


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
    asked_ahead: int = 0  # ... of them, asked for ahead of a free slot (no slot reserved)
    # its outstanding pull requests, oldest first: [number, messages still due, sent at, ahead]
    requests: collections.deque[list[float]] = field(default_factory=collections.deque)
    ready: collections.deque[Msg] = field(default_factory=collections.deque)  # delivered ahead
    # calls from the plain subject held here (`sort_ahead`), oldest first, with when held
    unsorted: collections.deque[tuple[Msg, float]] = field(default_factory=collections.deque)
    plain: int = 0  # calls from the plain subject held or running here
    backlog: int = 0  # stored on its subject (as last seen) or held, running calls included
    paused_until: float = 0.0
    consumer_ready: bool = False
    creating: bool = False
    active_at: float = field(default_factory=time.monotonic)
    throttled: int = 0  # answers of 429 (or 503 with Retry-After) seen
    breaker_defaults: BreakerSettings | None = None  # None: no breaker
    breaker: Breaker | None = field(init=False)
    paused: bool = False  # paused by hand (`ferry functions pause`): nothing new starts
    report: Callable[[str, Change], None] | None = None  # told of each breaker change

    def __post_init__(self) -> None:
        self.turn.key = self.subject
        self.limit = AimdLimit(self.slots)
        defaults = self.breaker_defaults
        self.breaker = Breaker(defaults) if defaults is not None else None

    @property
    def flowing(self) -> bool:
        """Neither paused nor held back by its breaker."""
        return not self.paused and (self.breaker is None or not self.breaker.state)

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
        """Stored, and neither running, asked for, delivered ahead nor held."""
        return max(
            0, self.backlog - self.inflight - self.asked - len(self.ready) - len(self.unsorted)
        )

    @property
    def has_work(self) -> bool:
        """Something it could run now: held, delivered ahead, or stored beyond what runs and
        was asked for. A few reads; `room` is 0 without it (a test holds that)."""
        return bool(self.ready or self.unsorted) or self.backlog > self.inflight + self.asked

    @property
    def pending(self) -> int:
        """Waiting to run here or anywhere (stored or held here, not running here)."""
        return max(0, self.backlog - self.inflight)

    def room(self, now: float, batch_max: int) -> int:
        """How many calls the fair order may give this lane now: those delivered ahead first,
        then those it may ask for."""
        if now < self.paused_until:
            return 0
        askable = 0
        if self.consumer_ready and len(self.requests) < REQUESTS_PER_LANE:
            askable = min(self.waiting, batch_max) if batch_max else self.waiting
        room = min(
            self.allowed - self.inflight - self.asked + self.asked_ahead,
            len(self.ready) + len(self.unsorted) + askable,
        )
        if not self.flowing:
            room = min(room, self._guarded_room(now))
        return max(0, room)

    def room_ahead(self, now: float, share: int) -> int:
        """How many more messages this lane may ask for ahead of a free slot (at most `share`
        held or asked for at once; none while it is paused, held back or not yet known)."""
        if (
            not self.consumer_ready
            or not self.known
            or not self.flowing
            or len(self.requests) >= REQUESTS_PER_LANE
            or now < self.paused_until
        ):
            return 0
        return max(0, min(share - len(self.ready) - self.asked_ahead, self.waiting))

    def _guarded_room(self, now: float) -> int:
        """Paused: nothing. Breaker open: nothing; half-open: one probe at a time."""
        if self.paused or self.breaker is None:
            return 0
        self._changed(self.breaker.tick(now))
        bound = self.breaker.room()
        return self.slots if bound is None else max(0, bound - self.inflight - self.asked)

    def admits(self) -> int:
        """Whether a delivered call may start: REFUSED while paused or while the breaker holds
        it back (asked for before it opened, or a second call while a probe runs), PROBE for
        the one call a half-open breaker lets through, else RUN."""
        if self.paused:
            return REFUSED
        breaker = self.breaker
        if breaker is None or not breaker.state:
            return RUN
        self._changed(breaker.tick(time.monotonic()))
        if not breaker.admit():
            return REFUSED
        return PROBE if breaker.probing else RUN

    def _changed(self, change: Change | None) -> None:
        if change is not None:
            log.warning(
                "breaker of %s is %s: %s",
                self.function or self.subject,
                change.state.name.lower().replace("_", "-"),
                change.reason,
            )
            if self.report is not None and self.function:
                self.report(self.function, change)

    def learn(self, function: str, annotations: Mapping[str, str]) -> None:
        """A message of this lane is starting: its annotations set the lane's weight and cap."""
        self.function = function
        self.turn.weight = annotated_weight(annotations)
        cap = annotated_cap(annotations)
        if cap != self.cap or not self.known:
            self.cap = cap
            self.limit.bound(min(self.slots, cap) if cap is not None else self.slots)
        self.known = True
        if self.breaker is not None and self.breaker_defaults is not None:
            if FAILURES_ANNOTATION in annotations or OPEN_FOR_ANNOTATION in annotations:
                self.breaker.configure(annotated_settings(annotations, self.breaker_defaults))
            elif self.breaker.settings is not self.breaker_defaults:
                self.breaker.configure(self.breaker_defaults)

    def delivered(self) -> None:
        """A message of this lane arrived to run: it counts as in flight from now on, so no
        request asks for a message its limit has no room for."""
        self.inflight += 1
        self.active_at = time.monotonic()

    def started(self) -> tuple[int, int]:
        """The call is sent; the limiter and breaker generations to report its outcome against."""
        return self.limit.generation, self.breaker.generation if self.breaker is not None else 0

    def finished(self, probe: bool = False, plain: bool = False) -> None:
        """A call ended (its message is mostly gone: the backlog is read again soon). A probe
        that ended without an answer that says up or down (never sent, or overloaded) lets
        the half-open breaker take another. `plain`: the call came from the plain subject."""
        if probe and self.breaker is not None:
            self.breaker.probe_ended()
        if plain:
            self.plain -= 1
        self.inflight -= 1
        self.backlog = max(0, self.backlog - 1)
        self.active_at = time.monotonic()

    def outcome(self, result: InvocationResult, generations: tuple[int, int], returns: int) -> Fate:
        """Map an attempt's answer onto the lane: breaker, limit, pause, and whether it is
        counted.

        Called before `finished`, so `inflight` still includes this call."""
        generation, breaker_generation = generations
        if self.breaker is not None and self._breaker_holds(result, breaker_generation):
            return Fate.HELD
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

    def _breaker_holds(self, result: InvocationResult, generation: int) -> bool:
        """Tell the breaker; True if the call is to wait in the queue, unattempted, because
        the function is down and the breaker is (now) open."""
        breaker = self.breaker
        assert breaker is not None
        up, change = breaker.record_attempt(generation, result)
        self._changed(change)
        return up is False and bool(breaker.state)

    def idle_since(self) -> float | None:
        """When the lane last had work, or None while it has some."""
        if self.inflight or self.asked or self.waiting or self.ready or self.unsorted:
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

"""How many calls of each function a connector runs at once (the queue worker's limiter, for
Kafka, SQS and cron).

One `FunctionLimit` per function recently called: its adaptive limit (`aimd.py`), the static
cap `ferry.max_inflight`, the calls running, the calls waiting for room and a pause. A call
that finds its function at its limit waits in line (the Kafka lane waits with it, so nothing
behind it overtakes it) instead of being sent; an answer of 429, or 503 with Retry-After,
cuts the limit, pauses that function alone for Retry-After, and the call goes back in line
without using one of its attempts (`MAX_FREE_RETURNS` times at most, so a function that
always refuses still ends in a dead letter). Under its limit, a call costs a dict lookup and
a few attribute updates: nothing is allocated.

The map is bounded: a function with nothing running or waiting is dropped once idle for
`IDLE_AFTER` (between one and two of it: the map sweeps once per `IDLE_AFTER`, dropping what
was not used since the sweep before), and all idle ones when `REMEMBERED` functions are held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator, Mapping

from connectors.core.aimd import AimdLimit
from connectors.core.breaker import (
    Breaker,
    BreakerSettings,
    BreakerState,
    Change,
    annotated_settings,
)
from connectors.core.invoker import InvocationResult
from connectors.core.retry import RetryPolicy
from connectors.core.topicmap import FunctionInfo

log = logging.getLogger("ferry.connector.breaker")

MAX_INFLIGHT_ANNOTATION = "ferry.max_inflight"
# A call sent back by the limiter (a 429 while probing) goes back in line without using an
# attempt, at most this many times; past that its 429s count like any other failed attempt.
MAX_FREE_RETURNS = 50
REMEMBERED = 4096
IDLE_AFTER = 60.0


def annotated_cap(annotations: Mapping[str, str]) -> int | None:
    """`ferry.max_inflight` (a positive whole number), or None."""
    text = annotations.get(MAX_INFLIGHT_ANNOTATION)
    if not text:
        return None
    try:
        cap = int(text)
    except ValueError:
        return None
    return cap if cap > 0 else None


def overload_pause(result: InvocationResult) -> tuple[bool, float | None]:
    """Whether the answer says the function is overloaded (429, or 503 with Retry-After),
    and its Retry-After in seconds if it gave one."""
    status = result.status
    if status != 429 and status != 503:
        return False, None
    retry_after = result.retry_after
    return status == 429 or retry_after is not None, retry_after


class FunctionLimit:
    """One function's limit in this process, and the calls waiting for room under it."""

    __slots__ = (
        "_wake_handle",
        "adaptive",
        "allowed",
        "breaker",
        "cap",
        "inflight",
        "limit",
        "name",
        "paused_until",
        "recent",
        "slots",
        "throttled",
        "waiters",
    )

    def __init__(
        self,
        slots: int,
        adaptive: bool,
        cap: int | None,
        breaker: BreakerSettings | None = None,
        name: str = "",
    ) -> None:
        self.slots = slots
        self.adaptive = adaptive
        self.cap: int | None = None
        self.limit = AimdLimit(slots)
        self.allowed = slots  # calls that may run at once now (kept, not worked out per call)
        self.inflight = 0  # calls admitted and not yet ended
        self.throttled = 0  # answers of 429 (or 503 with Retry-After)
        self.paused_until = 0.0
        self.recent = True  # used since the map's last sweep
        self.waiters: deque[asyncio.Future[bool]] = deque()
        self._wake_handle: asyncio.TimerHandle | None = None
        self.breaker = Breaker(breaker) if breaker is not None else None
        self.name = name
        self.recap(cap)

    def _reckon(self) -> None:
        """Work `allowed` out again after the limit or the cap changed."""
        bound = self.limit.allowed if self.adaptive else self.slots
        self.allowed = bound if self.cap is None else min(bound, self.cap)

    def recap(self, cap: int | None) -> None:
        """The function's `ferry.max_inflight` (None: none)."""
        if cap != self.cap:
            self.cap = cap
            self.limit.bound(self.slots if cap is None else min(self.slots, cap))
            self._reckon()

    def take(self) -> bool:
        """Admit a call at once if there is room and no one is waiting before it."""
        if self.waiters or self.inflight >= self.allowed:
            return False
        if self.paused_until and time.monotonic() < self.paused_until:
            return False
        breaker = self.breaker
        if breaker is not None and breaker.state and not self._breaker_admits(breaker):
            return False
        self.inflight += 1
        self.recent = True
        return True

    def _breaker_admits(self, breaker: Breaker) -> bool:
        """Open: no call starts (the pause that opened it runs out at its period's end);
        half-open: one probe at a time."""
        self._changed(breaker.tick(time.monotonic()))
        return breaker.admit()

    def breaker_generation(self) -> int:
        return self.breaker.generation if self.breaker is not None else 0

    async def wait(self) -> bool:
        """Wait in line for room; True once admitted, False if told to stop first."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # admitted just before the cancel: give the room back
            elif waiter in self.waiters:
                self.waiters.remove(waiter)
            raise

    def release(self) -> None:
        """An admitted call ended (or never started)."""
        self.inflight -= 1
        breaker = self.breaker
        if breaker is not None and breaker.state and not self.inflight:
            breaker.probe_ended()  # a probe that ended without an answer (an error) frees it
        if self.waiters:
            self._wake()

    def stop(self) -> None:
        """Every waiting call learns the source is stopping."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)

    def held(self, result: InvocationResult, generation: int) -> bool:
        """Tell the breaker (if any) how the call went; True if the call is to wait in line
        again, unattempted, because the function is down and its breaker (now) open. A closed
        breaker that saw no failure costs an attribute read or two on a success."""
        breaker = self.breaker
        if breaker is None:
            return False
        up, change = breaker.record_attempt(generation, result)
        self._changed(change)
        if result.ok:
            return False
        if breaker.state is BreakerState.HALF_OPEN and generation == breaker.generation:
            breaker.probe_ended()  # the probe said neither up nor down: another may probe
        return up is False and breaker.state is BreakerState.OPEN

    def _changed(self, change: Change | None) -> None:
        if change is None:
            return
        log.warning(
            "breaker of %s is %s: %s",
            self.name,
            change.state.name.lower().replace("_", "-"),
            change.reason,
        )
        if change.state is BreakerState.OPEN and self.breaker is not None:
            self._pause(self.breaker.until - time.monotonic())  # its calls wait till then

    def configure_breaker(self, settings: BreakerSettings | None) -> None:
        """The function's breaker annotations were read again."""
        if self.breaker is not None and settings is not None:
            self.breaker.configure(settings)

    def outcome(self, result: InvocationResult, generation: int, policy: RetryPolicy) -> bool:
        """Map an answer onto the limit and pause; True if it was overload (429, or 503
        with Retry-After). Called while `inflight` still counts this call. When the function
        refused this call with nothing else of it running and gave no Retry-After, it is
        paused for the policy's first back-off, so a lone refused call is not sent straight
        back."""
        if result.ok:
            limit = self.limit
            # no growth at the bound or below half use: skip it
            if self.adaptive and limit.limit < limit.maximum and self.inflight * 2 >= limit.limit:
                before = limit.limit
                limit.succeeded(self.inflight)
                if limit.limit != before:
                    self._reckon()
            return False
        overloaded, retry_after = overload_pause(result)
        if not overloaded:
            return False
        self.throttled += 1
        if retry_after is None and self.inflight <= 1:
            retry_after = policy.backoff(1)
        if retry_after:
            self._pause(retry_after)  # at most MAX_RETRY_AFTER_SECONDS (parse_retry_after)
        if self.adaptive:
            self.limit.dropped(generation, still_running=self.inflight - 1)
            self._reckon()
        return True

    def _pause(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        if until <= self.paused_until:
            return
        self.paused_until = until
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        self._wake_handle = asyncio.get_running_loop().call_later(seconds, self._timer_fired)

    def _timer_fired(self) -> None:
        self._wake_handle = None
        self._wake()

    def _wake(self) -> None:
        """Admit waiting calls, oldest first, while there is room and no pause."""
        if self.paused_until:
            left = self.paused_until - time.monotonic()
            if left > 0:  # a timer may fire a little early (the loop's clock resolution)
                if self._wake_handle is None:
                    loop = asyncio.get_running_loop()
                    self._wake_handle = loop.call_later(left, self._timer_fired)
                return
            self.paused_until = 0.0
        breaker = self.breaker
        while self.waiters and self.inflight < self.allowed:
            waiter = self.waiters[0]
            if waiter.done():
                self.waiters.popleft()
                continue
            if breaker is not None and breaker.state and not self._breaker_admits(breaker):
                return  # open again, or half-open with its probe running: that call wakes us
            self.waiters.popleft()
            self.inflight += 1
            waiter.set_result(True)

    @property
    def idle(self) -> bool:
        """Nothing running or waiting, and a closed breaker (an open one is remembered)."""
        return not self.inflight and not self.waiters and not (self.breaker and self.breaker.state)


class FunctionLimits:
    """The limits of the functions this process called recently, by qualified name."""

    def __init__(self, slots: int, adaptive: bool, breaker: BreakerSettings | None = None) -> None:
        self.slots = slots
        self.adaptive = adaptive
        self.breaker = breaker  # the process's breaker settings; None: no breaker
        self.by_name: dict[str, FunctionLimit] = {}
        self._swept_at = time.monotonic()

    def entry(
        self, name: str, cap: int | None, breaker: BreakerSettings | None = None
    ) -> FunctionLimit:
        found = self.by_name.get(name)
        if found is not None:
            return found
        self.sweep()
        settings = breaker if breaker is not None else self.breaker
        made = self.by_name[name] = FunctionLimit(self.slots, self.adaptive, cap, settings, name)
        return made

    def breaker_for(self, function: FunctionInfo) -> BreakerSettings | None:
        """The process's breaker settings with the function's annotations laid over them."""
        if self.breaker is None:
            return None
        return annotated_settings(function.annotations, self.breaker)

    def recap(self, name: str, cap: int | None, breaker: BreakerSettings | None = None) -> None:
        """A function's annotations were read again (a rebuilt topic map)."""
        found = self.by_name.get(name)
        if found is not None:
            found.recap(cap)
            found.configure_breaker(breaker)

    def stop(self) -> None:
        for limit in self.by_name.values():
            limit.stop()

    def __iter__(self) -> Iterator[tuple[str, FunctionLimit]]:
        return iter(list(self.by_name.items()))

    def __len__(self) -> int:
        return len(self.by_name)

    def sweep(self) -> None:
        """Drop idle functions: those unused since the last sweep, once per `IDLE_AFTER`, and
        all idle ones when the map is full (a busy one is never dropped: its calls hold it)."""
        now = time.monotonic()
        full = len(self.by_name) >= REMEMBERED
        if not full and now - self._swept_at < IDLE_AFTER:
            return
        self._swept_at = now
        for name, limit in list(self.by_name.items()):
            if limit.idle and (full or not limit.recent) and limit.paused_until <= now:
                del self.by_name[name]
            else:
                limit.recent = False

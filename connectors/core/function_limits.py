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
import time
from collections import deque
from collections.abc import Iterator, Mapping

from connectors.core.aimd import AimdLimit
from connectors.core.invoker import InvocationResult
from connectors.core.retry import RetryPolicy

MAX_INFLIGHT_ANNOTATION = "ferry.max_inflight"
# A call sent back by the limiter (a 429 while probing) goes back in line without using an
# attempt, at most this many times; past that its 429s count like any other failed attempt.
MAX_FREE_RETURNS = 50
MAX_PAUSE = 300.0  # the longest a Retry-After pauses a function
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
        "cap",
        "inflight",
        "limit",
        "paused_until",
        "recent",
        "slots",
        "throttled",
        "waiters",
    )

    def __init__(self, slots: int, adaptive: bool, cap: int | None) -> None:
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
        self.inflight += 1
        self.recent = True
        return True

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
        if self.waiters:
            self._wake()

    def stop(self) -> None:
        """Every waiting call learns the source is stopping."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)

    def outcome(self, result: InvocationResult, generation: int, policy: RetryPolicy) -> bool:
        """Map an answer onto the limit and pause; True if it was overload (429, or 503
        with Retry-After). Called while `inflight` still counts this call. When the function
        refused this call with nothing else of it running and gave no Retry-After, it is
        paused for the policy's first back-off, so a lone refused call is not sent straight
        back."""
        if result.ok:
            limit = self.limit
            if self.adaptive and self.inflight * 2 >= limit.limit:  # else no growth: skip it
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
            self._pause(min(retry_after, MAX_PAUSE))
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
        while self.waiters and self.inflight < self.allowed:
            waiter = self.waiters.popleft()
            if waiter.done():
                continue
            self.inflight += 1
            waiter.set_result(True)

    @property
    def idle(self) -> bool:
        return not self.inflight and not self.waiters


class FunctionLimits:
    """The limits of the functions this process called recently, by qualified name."""

    def __init__(self, slots: int, adaptive: bool) -> None:
        self.slots = slots
        self.adaptive = adaptive
        self.by_name: dict[str, FunctionLimit] = {}
        self._swept_at = time.monotonic()

    def entry(self, name: str, cap: int | None) -> FunctionLimit:
        found = self.by_name.get(name)
        if found is not None:
            return found
        self.sweep()
        made = self.by_name[name] = FunctionLimit(self.slots, self.adaptive, cap)
        return made

    def recap(self, name: str, cap: int | None) -> None:
        """A function's annotations were read again (a rebuilt topic map)."""
        found = self.by_name.get(name)
        if found is not None:
            found.recap(cap)

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

"""One timer for every answer a client awaits, instead of a timer per request.

A timer handle per request (made, started, cancelled, closed) cost more than a microsecond and
a second pass of the event loop, on every invocation; almost every request is answered long
before its deadline. Here each awaited answer is one dict entry, and a single timer is armed
for the earliest deadline among them. When it fires, every answer whose deadline has passed
expires and the timer is armed again for the next one, so each request still times out at its
own deadline (to the loop's timer resolution, as a timer of its own would).
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

# A loop fires timers up to its clock resolution early (uvloop counts milliseconds): a
# deadline this close counts as reached, or the timer would be armed again for no time at all.
RESOLUTION = 0.001


class Expiring(Protocol):
    def expire(self) -> None: ...


class Deadlines:
    """Deadlines of awaited answers; `expire()` is called on each whose deadline passes."""

    def __init__(self) -> None:
        self._waiting: dict[Expiring, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = math.inf

    def watch(self, waiter: Expiring, deadline: float) -> None:
        self._waiting[waiter] = deadline
        if deadline < self._armed_for:
            self._arm(deadline)

    def forget(self, waiter: Expiring) -> None:
        """The answer came (or the exchange ended otherwise): no expiry for it."""
        self._waiting.pop(waiter, None)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self._fire)
        self._armed_for = when

    def _fire(self) -> None:
        self._timer, self._armed_for = None, math.inf
        now = asyncio.get_running_loop().time() + RESOLUTION
        due = [waiter for waiter, deadline in self._waiting.items() if deadline <= now]
        for waiter in due:
            del self._waiting[waiter]
        for waiter in due:
            waiter.expire()
        if self._waiting:
            self._arm(min(self._waiting.values()))

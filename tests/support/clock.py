"""A clock tests move by hand: sleepers wake when it reaches them, never in real time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from tests.support.ports import eventually


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self._now = start
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (when, waiter)
        self._sleepers.append(entry)
        try:
            await waiter
        finally:
            self._sleepers.remove(entry)

    @property
    def waiting(self) -> int:
        return sum(1 for _, w in self._sleepers if not w.done())

    async def settle(self, sleepers: int) -> None:
        """Wait until `sleepers` tasks sleep on this clock again (they handled their wake-up)."""
        await eventually(lambda: self.waiting >= sleepers, 10, 0.002, what=f"{sleepers} sleepers")

    async def advance_to(self, target: datetime, idle: Callable[[], bool] | None = None) -> None:
        """Move time forward deadline by deadline, letting every sleeper run at each one.

        With `idle`, also wait at each deadline until it is true (e.g. the calls it started are
        done), as real time would allow between slots.
        """
        while True:
            pending = [when for when, w in self._sleepers if not w.done()]
            upcoming = min((w for w in pending if w > self._now), default=None)
            if upcoming is None or upcoming > target:
                self._now = target
                return
            await self.jump(upcoming)
            if idle is not None:
                await eventually(idle, 10, 0.002, what="idle after a slot")

    async def jump(self, target: datetime) -> None:
        """Set the time at once (a suspended process, a clock jump) and wake who is due."""
        count = self.waiting
        self._now = target
        for when, waiter in list(self._sleepers):
            if when <= target and not waiter.done():
                waiter.set_result(None)
        await asyncio.sleep(0)
        await self.settle(count)

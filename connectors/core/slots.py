"""A counted pool of invocation slots: how much work a process may take right now."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class Slots:
    """At most `size` pieces of work at once. The waits say only that a slot was free when
    they ended: read `free` again when taking (another task may have taken it meanwhile)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.used = 0
        self._changed = asyncio.Event()

    @property
    def free(self) -> int:
        return self.size - self.used

    async def wait_free(self) -> None:
        """Wait until at least one slot is free."""
        while self.used >= self.size:
            self._changed.clear()
            await self._changed.wait()

    async def wait_free_unless(self, stop: asyncio.Event) -> bool:
        """Like `wait_free`; False as soon as `stop` is set instead."""
        waiter = asyncio.create_task(self.wait_free())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stop.is_set():
            waiter.cancel()
            return False
        return True

    async def wait_idle(self) -> None:
        while self.used:
            self._changed.clear()
            await self._changed.wait()

    def take(self, count: int = 1) -> None:
        if self.used + count > self.size:
            raise RuntimeError("more slots taken than the pool has")
        self.used += count
        self._changed.set()

    def release(self, count: int = 1) -> None:
        self.used = max(self.used - count, 0)
        self._changed.set()

    def take_back(self) -> None:
        """One slot for work that gave its slot up while it waited, even past `size`: no new
        work starts until `used` is below `size` again."""
        self.used += 1
        self._changed.set()


class CallSlots:
    """At most `size` calls at once, handed out oldest waiter first (as `asyncio.Semaphore`).

    Taking a free slot is a counter update, not a coroutine: a connector takes one for every
    call, and almost always one is free (the Kafka lanes already bound the records running).
    """

    __slots__ = ("_waiters", "free")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take(self) -> bool:
        """A slot at once, if one is free and no one waits before this call."""
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Wait in line until a slot is handed over (the caller then holds it)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just before the cancel: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """A call ended: its slot goes straight to the oldest waiter, else back to the pool."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1

"""Ordering: records run in lanes, one at a time within a lane, lanes side by side.

The lane decides what Kafka order is kept: `partition` puts every record of a partition in one
lane (Kafka's own promise), `key` gives each key of a partition its own lane (records without a
key are unordered, as Kafka promises nothing for them), `none` gives every record its own lane.
At most `limit` records run at once across all lanes; a queued record has not started, so it can
be dropped when its partition is revoked or the process stops, and Kafka redelivers it.

A running record that waits for something other than a slot (its function's limit, or a retry
back-off) steps aside (`step_aside`): its lane stays held, so nothing behind it overtakes it, but
its place among the `limit` goes to another lane meanwhile, so one function at its limit (or
failing) cannot hold every place. How many wait aside is bounded by the records the connector
takes in (`max_uncommitted` per partition): each is one task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from typing import Generic, TypeVar

from connectors.core.aside import StepAside
from connectors.core.supervision import cancel_and_wait

log = logging.getLogger("ferry.kafka")

W = TypeVar("W")


def lane_for(ordering: str, key: bytes | None, offset: int) -> Hashable:
    """The lane of a record within its partition."""
    if ordering == "partition":
        return ()
    if ordering == "key" and key is not None:
        return ("key", key)
    return ("offset", offset)


class _Lane(Generic[W]):
    def __init__(self) -> None:
        self.queue: deque[W] = deque()
        self.task: asyncio.Task[None] | None = None  # the item running now, if any
        self.ready = False  # waiting in the scheduler's ready queue


class LaneScheduler(Generic[W]):
    """Runs `run(item)` per item: serial per lane, parallel across lanes, `limit` at once.

    Lanes are grouped (a group is a partition) so a group's queued work can be dropped and its
    running work awaited or cancelled on its own. Only running items hold a task: a lane with
    queued work waits in a ready queue, and a task that finishes an item goes straight on with
    the next ready lane, so a slot never waits for the event loop to come round and no task is
    made per record. (One task per queued lane, all waiting on a semaphore, cost a task and a
    future per record and left freed slots idle until a woken waiter ran: with thousands of
    records queued, the Kafka connector sat idle half the time.)
    """

    def __init__(self, run: Callable[[W], Awaitable[None]], limit: int) -> None:
        self._run = run
        self.limit = limit
        self._lanes: dict[tuple[Hashable, Hashable], _Lane[W]] = {}
        self._ready: deque[tuple[Hashable, Hashable]] = deque()
        self._closed_groups: set[Hashable] = set()
        self._stopped = False
        self._running_in: Counter[Hashable] = Counter()
        self._item_done = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.running = 0  # items holding one of the `limit` places
        self._aside = StepAside(self._give_place, self._take_place_back)

    @property
    def aside(self) -> int:
        """Items started and waiting aside, without a place."""
        return self._aside.aside

    def step_aside(self) -> AbstractAsyncContextManager[None]:
        """For the running item (in its task, or tasks it made) while it waits on something
        else than a place here: the place goes to the next ready lane, the item's lane stays
        held. On the way back it takes a place at once, even past `limit` (its invocation
        still waits for one of the process's `max_inflight` slots); new lanes start only below
        `limit` again. Outside this scheduler's items: nothing (`connectors.core.aside`)."""
        return self._aside.step()

    def _give_place(self) -> None:
        self.running -= 1
        self._start_ready()

    def _take_place_back(self) -> None:
        self.running += 1

    def submit(self, group: Hashable, lane_key: Hashable, item: W) -> bool:
        """Queue `item` behind its lane; False when its group or the scheduler is closed."""
        if self._stopped or group in self._closed_groups:
            return False
        key = (group, lane_key)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.queue.append(item)
        if lane.task is None and not lane.ready:
            lane.ready = True
            self._ready.append(key)
        self._start_ready()
        return True

    def open(self, group: Hashable) -> None:
        """Accept work for `group` again (a partition assigned back to us)."""
        self._closed_groups.discard(group)

    @property
    def queued(self) -> int:
        return sum(len(lane.queue) for lane in self._lanes.values())

    def tasks(self, group: Hashable | None = None) -> set[asyncio.Task[None]]:
        """The tasks running an item now (of `group`, or all)."""
        return {
            lane.task
            for key, lane in self._lanes.items()
            if lane.task is not None and (group is None or key[0] == group)
        }

    async def idle(self) -> None:
        """Wait until nothing runs and nothing is queued."""
        await self._idle.wait()

    async def close_group(self, group: Hashable, timeout: float) -> int:
        """Drop the group's queued items, let running ones finish within `timeout`, cancel
        the rest. Returns how many lanes had to be cancelled."""
        self._closed_groups.add(group)
        for key, lane in self._lanes.items():
            if key[0] == group:
                lane.queue.clear()
        return await self._settle(group, timeout)

    async def stop(self, timeout: float) -> int:
        """Start nothing more; let running items finish within `timeout`, cancel the rest."""
        self._stopped = True
        for lane in self._lanes.values():
            lane.queue.clear()
        self._ready.clear()
        return await self._settle(None, timeout)

    async def _settle(self, group: Hashable | None, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self._running_in[group] if group is not None else self.running + self.aside) > 0:
            self._item_done.clear()
            try:
                await asyncio.wait_for(self._item_done.wait(), deadline - loop.time())
            except TimeoutError:
                break
        stuck = self.tasks(group)
        await cancel_and_wait(*stuck)
        return len(stuck)

    def _start_ready(self) -> None:
        """Start ready lanes, each in a task of its own, while fewer than `limit` items run."""
        while (taken := self._take_ready()) is not None:
            key, lane, item = taken
            lane.task = asyncio.create_task(self._drive(key, lane, item))
        if not self.running and not self.aside and not self._ready:
            self._idle.set()

    def _take_ready(self) -> tuple[tuple[Hashable, Hashable], _Lane[W], W] | None:
        """The next item of the next ready lane, counted as running; None if none may start."""
        while self._ready and self.running < self.limit and not self._stopped:
            key = self._ready.popleft()
            lane = self._lanes.get(key)
            if lane is None:
                continue
            lane.ready = False
            if not lane.queue:  # its group was closed meanwhile
                self._forget_if_empty(key, lane)
                continue
            self.running += 1
            self._running_in[key[0]] += 1
            self._idle.clear()
            return key, lane, lane.queue.popleft()
        return None

    async def _drive(self, key: tuple[Hashable, Hashable], lane: _Lane[W], item: W) -> None:
        """Run `item`, then go straight on with the next ready lane while there is one."""
        task = asyncio.current_task()
        self._aside.begin()  # one token for the items this task runs, one after the other
        while True:
            try:
                await self._run(item)
            except asyncio.CancelledError:
                self._ended(key, lane)
                self._start_ready()  # the slot goes to another lane, in a task of its own
                raise
            except Exception:
                # the item stays unfinished (never committed); Kafka redelivers it
                log.exception("record processing failed; it stays uncommitted")
            self._ended(key, lane)
            taken = self._take_ready()
            if taken is None:
                if not self.running and not self.aside and not self._ready:
                    self._idle.set()
                return
            key, lane, item = taken
            lane.task = task

    def _ended(self, key: tuple[Hashable, Hashable], lane: _Lane[W]) -> None:
        self.running -= 1
        self._running_in[key[0]] -= 1
        if not self._running_in[key[0]]:
            del self._running_in[key[0]]
        lane.task = None
        if lane.queue:
            lane.ready = True
            self._ready.append(key)
        else:
            self._forget_if_empty(key, lane)
        self._item_done.set()

    def _forget_if_empty(self, key: tuple[Hashable, Hashable], lane: _Lane[W]) -> None:
        if not lane.queue and lane.task is None and self._lanes.get(key) is lane:
            del self._lanes[key]

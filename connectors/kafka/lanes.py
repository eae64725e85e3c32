"""Ordering: records run in lanes, one at a time within a lane, lanes side by side.

The lane decides what Kafka order is kept: `partition` puts every record of a partition in one
lane (Kafka's own promise), `key` gives each key of a partition its own lane (records without a
key are unordered, as Kafka promises nothing for them), `none` gives every record its own lane.
At most `limit` records run at once across all lanes; a queued record has not started, so it can
be dropped when its partition is revoked or the process stops, and Kafka redelivers it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

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
    running work awaited or cancelled on its own. Only running items have tasks: a lane with
    queued work waits in a ready queue, and the moment an item ends the next ready lane starts,
    in the same callback. (One task per queued lane, all waiting on a semaphore, cost a task and
    a future per record and left freed slots idle until the loop came round to the woken
    waiter: with thousands of records queued, the connector sat idle half the time.)
    """

    def __init__(self, run: Callable[[W], Awaitable[None]], limit: int) -> None:
        self._run = run
        self.limit = limit
        self._lanes: dict[tuple[Hashable, Hashable], _Lane[W]] = {}
        self._ready: deque[tuple[Hashable, Hashable]] = deque()
        self._closed_groups: set[Hashable] = set()
        self._stopped = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.running = 0

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
        """The tasks of the items running now (of `group`, or all)."""
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
        return await self._settle(self.tasks(group), timeout)

    async def stop(self, timeout: float) -> int:
        """Start nothing more; let running items finish within `timeout`, cancel the rest."""
        self._stopped = True
        for lane in self._lanes.values():
            lane.queue.clear()
        self._ready.clear()
        return await self._settle(self.tasks(), timeout)

    async def _settle(self, tasks: set[asyncio.Task[None]], timeout: float) -> int:
        if not tasks:
            return 0
        _, unfinished = await asyncio.wait(tasks, timeout=timeout)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        return len(unfinished)

    def _start_ready(self) -> None:
        """Start the next item of ready lanes while fewer than `limit` items run."""
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
            self._idle.clear()
            lane.task = asyncio.create_task(self._run_one(key, lane, lane.queue.popleft()))
        if not self.running and not self._ready:
            self._idle.set()

    async def _run_one(self, key: tuple[Hashable, Hashable], lane: _Lane[W], item: W) -> None:
        try:
            await self._run(item)
        except Exception:
            # the item stays unfinished (never committed); Kafka redelivers it
            log.exception("record processing failed; it stays uncommitted")
        finally:
            self.running -= 1
            lane.task = None
            if lane.queue:
                lane.ready = True
                self._ready.append(key)
            else:
                self._forget_if_empty(key, lane)
            self._start_ready()

    def _forget_if_empty(self, key: tuple[Hashable, Hashable], lane: _Lane[W]) -> None:
        if not lane.queue and lane.task is None and self._lanes.get(key) is lane:
            del self._lanes[key]

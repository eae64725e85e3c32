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
        self.task: asyncio.Task[None] | None = None


class LaneScheduler(Generic[W]):
    """Runs `run(item)` per item: serial per lane, parallel across lanes, `limit` at once.

    Lanes are grouped (a group is a partition) so a group's queued work can be dropped and its
    running work awaited or cancelled on its own.
    """

    def __init__(self, run: Callable[[W], Awaitable[None]], limit: int) -> None:
        self._run = run
        self._limit = asyncio.Semaphore(limit)
        self._lanes: dict[tuple[Hashable, Hashable], _Lane[W]] = {}
        self._closed_groups: set[Hashable] = set()
        self._stopped = False
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
        if lane.task is None:
            lane.task = asyncio.create_task(self._drive(key, lane), name=f"lane-{key!r}")
        return True

    def open(self, group: Hashable) -> None:
        """Accept work for `group` again (a partition assigned back to us)."""
        self._closed_groups.discard(group)

    @property
    def queued(self) -> int:
        return sum(len(lane.queue) for lane in self._lanes.values())

    def tasks(self, group: Hashable | None = None) -> set[asyncio.Task[None]]:
        return {
            lane.task
            for key, lane in self._lanes.items()
            if lane.task is not None and (group is None or key[0] == group)
        }

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
        return await self._settle(self.tasks(), timeout)

    async def _settle(self, tasks: set[asyncio.Task[None]], timeout: float) -> int:
        if not tasks:
            return 0
        _, unfinished = await asyncio.wait(tasks, timeout=timeout)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        return len(unfinished)

    async def _drive(self, key: tuple[Hashable, Hashable], lane: _Lane[W]) -> None:
        try:
            while lane.queue:
                async with self._limit:
                    if not lane.queue:
                        break
                    item = lane.queue.popleft()
                    self.running += 1
                    try:
                        await self._run(item)
                    except Exception:
                        # the item stays unfinished (never committed); Kafka redelivers it
                        log.exception("record processing failed; it stays uncommitted")
                    finally:
                        self.running -= 1
        finally:
            lane.task = None
            if self._lanes.get(key) is lane:
                del self._lanes[key]

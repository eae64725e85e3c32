"""Ordering lanes: serial within a lane, parallel across lanes, queued work can be dropped."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.kafka.lanes import LaneScheduler, lane_for
from tests.support.ports import eventually


@pytest.mark.parametrize(
    ("ordering", "a", "b", "same_lane"),
    [
        ("partition", (b"k1", 0), (b"k2", 1), True),
        ("key", (b"k1", 0), (b"k1", 1), True),
        ("key", (b"k1", 0), (b"k2", 1), False),
        ("key", (None, 0), (None, 1), False),  # Kafka orders nothing without a key
        ("none", (b"k1", 0), (b"k1", 1), False),
    ],
)
def test_lane_choice_follows_the_ordering_mode(
    ordering: str,
    a: tuple[bytes | None, int],
    b: tuple[bytes | None, int],
    same_lane: bool,
) -> None:
    assert (lane_for(ordering, *a) == lane_for(ordering, *b)) is same_lane


RUN_TIME = 0.01  # what a Recorder item takes once its gate is open


class Recorder:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.running = 0
        self.peak = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def run(self, item: str) -> None:
        self.started.append(item)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(RUN_TIME)
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(item)
            raise
        self.running -= 1
        self.finished.append(item)


async def test_one_lane_runs_in_order_and_lanes_run_side_by_side() -> None:
    rec = Recorder()
    lanes: LaneScheduler[str] = LaneScheduler(rec.run, limit=10)
    for i in range(5):
        lanes.submit("p0", "a", f"a{i}")
        lanes.submit("p0", "b", f"b{i}")
    await lanes.idle()
    assert [x for x in rec.finished if x[0] == "a"] == [f"a{i}" for i in range(5)]
    assert [x for x in rec.finished if x[0] == "b"] == [f"b{i}" for i in range(5)]
    assert rec.peak == 2


async def test_limit_bounds_items_running_at_once() -> None:
    rec = Recorder()
    lanes: LaneScheduler[str] = LaneScheduler(rec.run, limit=3)
    for i in range(12):
        lanes.submit("p0", i, f"x{i}")
    await lanes.idle()
    assert rec.peak == 3
    assert len(rec.finished) == 12


async def test_closing_a_group_drops_its_queued_items_and_keeps_others() -> None:
    rec = Recorder()
    rec.gate.clear()
    lanes: LaneScheduler[str] = LaneScheduler(rec.run, limit=10)
    for i in range(3):
        lanes.submit("p0", "lane", f"p0-{i}")
        lanes.submit("p1", "lane", f"p1-{i}")
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(lanes.close_group("p0", timeout=5))
    await asyncio.sleep(0.01)
    rec.gate.set()
    assert await closing == 0
    assert not lanes.submit("p0", "lane", "late")
    await lanes.idle()
    assert [x for x in rec.started if x.startswith("p0")] == ["p0-0"]
    assert [x for x in rec.finished if x.startswith("p1")] == ["p1-0", "p1-1", "p1-2"]


async def test_stop_cancels_what_outlives_the_bound() -> None:
    rec = Recorder()
    rec.gate.clear()
    lanes: LaneScheduler[str] = LaneScheduler(rec.run, limit=10)
    lanes.submit("p0", "lane", "stuck")
    lanes.submit("p0", "lane", "queued")
    await eventually(lambda: rec.started == ["stuck"], 5, 0.001, what="the first item running")
    began = time.monotonic()
    assert await lanes.stop(timeout=0.1) == 1
    assert 0.1 <= time.monotonic() - began < 2  # waited out the bound, not more
    assert rec.cancelled == ["stuck"]  # cut short at the bound, not left running
    rec.gate.set()  # from now on anything started, or left running, would finish
    await asyncio.wait_for(lanes.idle(), 5)  # nothing runs, nothing is queued
    await asyncio.sleep(20 * RUN_TIME)  # and long enough for either to show if it did
    assert rec.started == ["stuck"]  # the queued item was dropped, never started
    assert rec.finished == []


async def test_queued_lanes_hold_no_task_only_running_items_do() -> None:
    """Thousands of queued records cost a deque entry each, not a task and a future."""
    rec = Recorder()
    rec.gate.clear()
    lanes: LaneScheduler[str] = LaneScheduler(rec.run, limit=4)
    before = len(asyncio.all_tasks())
    for i in range(400):
        lanes.submit(f"p{i % 6}", i, f"x{i}")
    await asyncio.sleep(0.05)
    assert lanes.running == 4
    assert lanes.queued == 396
    assert len(asyncio.all_tasks()) - before == 4
    rec.gate.set()
    await lanes.idle()
    assert len(rec.finished) == 400
    assert rec.peak == 4


class AsideRecorder:
    """Items named `wait…` step aside until `opened` is set (`wait2…`: in two tasks at once,
    as an event for two functions does); other items run at once. Records what runs side by
    side outside the aside waits."""

    def __init__(self) -> None:
        self.lanes: LaneScheduler[str] = LaneScheduler(self.run, limit=2)
        self.opened = asyncio.Event()
        self.finished: list[str] = []
        self.working = 0  # items running, not waiting aside
        self.peak_working = 0

    async def run(self, item: str) -> None:
        if item.startswith("wait"):
            waits = 2 if item.startswith("wait2") else 1
            await asyncio.gather(*(self._aside() for _ in range(waits)))
        self.working += 1
        self.peak_working = max(self.peak_working, self.working)
        await asyncio.sleep(RUN_TIME)
        self.working -= 1
        self.finished.append(item)

    async def _aside(self) -> None:
        async with self.lanes.step_aside():
            await self.opened.wait()


async def test_an_item_waiting_aside_gives_its_place_to_other_lanes_and_keeps_its_lane() -> None:
    rec = AsideRecorder()
    rec.lanes.submit("p0", "held", "wait-a")
    rec.lanes.submit("p0", "held", "after-a")  # same lane: must not overtake wait-a
    rec.lanes.submit("p0", "other", "wait-b")
    for i in range(6):
        rec.lanes.submit("p0", f"free-{i}", f"free-{i}")
    # both places were taken by items waiting aside: the free lanes still all run
    await eventually(lambda: len(rec.finished) == 6, 5, 0.005, what="the free lanes")
    assert sorted(rec.finished) == [f"free-{i}" for i in range(6)]
    assert rec.peak_working <= 2
    assert rec.lanes.aside == 2 and rec.lanes.running == 0
    rec.opened.set()
    await asyncio.wait_for(rec.lanes.idle(), 5)
    assert rec.finished.index("wait-a") < rec.finished.index("after-a")
    assert rec.lanes.running == 0 and rec.lanes.aside == 0


async def test_an_item_waiting_aside_in_two_tasks_gives_up_one_place() -> None:
    rec = AsideRecorder()
    rec.lanes.submit("p0", "held", "wait2-a")
    for i in range(6):
        rec.lanes.submit("p0", f"free-{i}", f"free-{i}")
    await eventually(lambda: len(rec.finished) == 6, 5, 0.005, what="the free lanes")
    assert rec.peak_working <= 2  # the limit: not 3, as a place given up twice would allow
    rec.opened.set()
    await asyncio.wait_for(rec.lanes.idle(), 5)
    assert rec.lanes.running == 0 and rec.lanes.aside == 0


async def test_stop_waits_for_and_cancels_items_waiting_aside() -> None:
    rec = AsideRecorder()
    rec.lanes.submit("p0", "held", "wait-a")
    await eventually(lambda: rec.lanes.aside == 1, 5, 0.005, what="the item aside")
    assert await rec.lanes.stop(timeout=0.1) == 1  # it was still waiting: cancelled
    assert rec.lanes.running == 0 and rec.lanes.aside == 0
    await asyncio.wait_for(rec.lanes.idle(), 5)


async def test_stepping_aside_outside_an_item_changes_nothing() -> None:
    lanes: LaneScheduler[str] = LaneScheduler(Recorder().run, limit=2)
    async with lanes.step_aside():
        assert lanes.running == 0 and lanes.aside == 0

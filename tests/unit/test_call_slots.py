"""`CallSlots`, the connectors' `max_inflight` bound: never more calls than slots, freed slots
go to the oldest waiter, and a waiter that is cancelled never keeps or loses a slot."""

from __future__ import annotations

import asyncio

import pytest

from connectors.core.slots import CallSlots


def test_takes_at_most_size_slots_at_once() -> None:
    slots = CallSlots(2)
    assert slots.take() and slots.take()
    assert not slots.take()
    slots.release()
    assert slots.take()
    assert slots.free == 0


async def test_a_freed_slot_goes_to_the_oldest_waiter_not_to_a_newcomer() -> None:
    slots = CallSlots(1)
    assert slots.take()
    order: list[str] = []

    async def waits(name: str) -> None:
        await slots.wait()
        order.append(name)

    first = asyncio.create_task(waits("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(waits("second"))
    await asyncio.sleep(0)
    slots.release()
    assert not slots.take()  # the slot is the first waiter's, though it has not run yet
    await first
    assert order == ["first"] and not second.done()
    slots.release()
    await second
    assert order == ["first", "second"]
    slots.release()
    assert slots.free == 1


async def test_a_cancelled_waiter_leaves_the_line_without_a_slot() -> None:
    slots = CallSlots(1)
    assert slots.take()
    waiter = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    slots.release()
    assert slots.free == 1
    assert slots.take()


async def test_a_waiter_cancelled_after_its_slot_came_passes_it_on() -> None:
    slots = CallSlots(1)
    assert slots.take()
    handed = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)
    behind = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)
    slots.release()  # the slot is handed to `handed`...
    handed.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await handed
    await behind  # the slot went on to the next in line
    assert slots.free == 0
    slots.release()
    assert slots.free == 1


def test_a_pool_needs_a_slot() -> None:
    with pytest.raises(ValueError):
        CallSlots(0)

"""`connectors.core.aside`: a waiting message gives its place back once, up to a bound."""

from __future__ import annotations

import asyncio

from connectors.core.aside import StepAside


class Places:
    def __init__(self) -> None:
        self.held = 0

    def give(self) -> None:
        self.held -= 1

    def take_back(self) -> None:
        self.held += 1


async def _message(aside: StepAside, places: Places, opened: asyncio.Event, waits: int) -> None:
    aside.begin()
    places.held += 1  # as the source counts the message when it starts it

    async def wait() -> None:
        async with aside.step():
            await opened.wait()

    await asyncio.gather(*(wait() for _ in range(waits)))
    places.held -= 1


async def test_past_the_bound_a_waiting_message_keeps_its_place() -> None:
    places, opened = Places(), asyncio.Event()
    aside = StepAside(places.give, places.take_back, most=2)
    tasks = [asyncio.create_task(_message(aside, places, opened, waits=2)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert aside.aside == 2  # two gave their place back (once each, though waiting twice)
    assert places.held == 1  # the third kept its own
    opened.set()
    await asyncio.gather(*tasks)
    assert aside.aside == 0 and places.held == 0


async def test_outside_a_message_stepping_aside_changes_nothing() -> None:
    places = Places()
    aside = StepAside(places.give, places.take_back)
    async with aside.step():
        assert aside.aside == 0 and places.held == 0

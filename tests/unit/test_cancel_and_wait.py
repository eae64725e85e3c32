"""`cancel_and_wait`: a task whose cancel was swallowed (Python 3.11's `asyncio.wait_for`,
which nats-py uses for every request, returns the answer instead when it arrived in the same
loop turn as the cancel) is cancelled again, so a process's stop cannot hang on it."""

from __future__ import annotations

import asyncio

import pytest

from connectors.core.supervision import cancel_and_wait


class AskingLoop:
    """A background loop that asks for an answer again and again, as a refresher does."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[int] | None = None
        self.asked = asyncio.Event()
        self.rounds = 0

    async def run(self) -> None:
        while True:
            self.answer = asyncio.get_running_loop().create_future()
            self.asked.set()
            await asyncio.wait_for(self.answer, 30)
            self.rounds += 1
            self.asked.clear()

    async def answered_as_cancelled(self, task: asyncio.Task[None]) -> None:
        """The answer comes in the same loop turn as the cancel: the cancel is lost."""
        await self.asked.wait()
        assert self.answer is not None
        self.answer.set_result(1)
        task.cancel()


async def test_a_lost_cancel_is_what_a_single_cancel_leaves_running() -> None:
    asking = AskingLoop()
    task = asyncio.create_task(asking.run())
    await asking.answered_as_cancelled(task)
    with pytest.raises(TimeoutError):  # what `cancel(); await gather(task)` would wait for
        await asyncio.wait_for(asyncio.shield(task), 0.3)
    assert not task.done() and asking.rounds >= 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_task_that_lost_its_cancel_is_cancelled_again() -> None:
    asking = AskingLoop()
    task = asyncio.create_task(asking.run())
    await asking.asked.wait()
    assert asking.answer is not None
    asking.answer.set_result(1)  # answered in the turn of the cancel `cancel_and_wait` makes
    await asyncio.wait_for(cancel_and_wait(task, again=0.05), 5)
    assert task.cancelled()
    assert asking.rounds == 1  # the first cancel was lost, the second one ended it


async def test_the_outcomes_are_read_and_done_tasks_are_left_as_they_are() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    async def returns() -> int:
        return 7

    failed, returned = asyncio.create_task(fails()), asyncio.create_task(returns())
    await asyncio.sleep(0)
    sleeping = asyncio.create_task(asyncio.sleep(30))
    await cancel_and_wait(failed, returned, sleeping)
    assert isinstance(failed.exception(), ValueError)
    assert returned.result() == 7
    assert sleeping.cancelled()

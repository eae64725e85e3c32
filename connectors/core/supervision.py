"""Long-lived tasks are watched: one that ends while its service still runs is a crash.

An asyncio task that raises keeps its exception to itself until someone awaits it; a
background loop that dies that way (a topic-map refresher, a commit loop, a poller) would
leave the process looking healthy while it silently stopped doing that part of its job.
A service's `run()` waits here instead: if a watched task ends before the service is told to
stop, `run()` raises `TaskDied` naming it, and the runner logs it and exits 1 (so the
orchestrator restarts the process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from connectors.core.errors import FerryError

T = TypeVar("T")

RECANCEL_SECONDS = 1.0


class TaskDied(FerryError):
    """A long-lived task ended while its service was still running."""


def _ending(task: asyncio.Task[Any]) -> tuple[str, BaseException | None]:
    name = task.get_name()
    if task.cancelled():
        return f"task {name} was cancelled", None
    error = task.exception()
    if error is None:
        return f"task {name} returned", None
    return f"task {name} died: {error.__class__.__name__}: {error}", error


def raise_if_ended(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """For loops that wake up on their own: `TaskDied` if one of `tasks` has ended."""
    for task in tasks:
        if task.done():
            what, error = _ending(task)
            raise TaskDied(what) from error


async def until_stopped(stopping: asyncio.Event, tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Wait for `stopping`; raise `TaskDied` if one of `tasks` ends first.

    A task that ends after `stopping` is set is simply done (loops end when told to stop).
    The tasks are left running either way: the caller decides how each one is ended.
    """
    watched = set(tasks)
    waiter = asyncio.create_task(stopping.wait(), name="stop-signal")
    try:
        while watched and not stopping.is_set():
            done, _ = await asyncio.wait({waiter, *watched}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {waiter}:
                watched.discard(task)
                if not stopping.is_set():
                    what, error = _ending(task)
                    raise TaskDied(what) from error
        await waiter
    finally:
        waiter.cancel()


async def unless_set(stop: asyncio.Event, work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Run `work` until it ends or `stop` is set, whichever comes first. If `stop` comes first
    (or the caller is cancelled), `work` is cancelled and awaited. The future returned is done:
    cancelled when the stop came first, else holding `work`'s result or exception."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        await cancel_and_wait(task)
    return task


async def cancel_and_wait(*tasks: asyncio.Future[Any], again: float = RECANCEL_SECONDS) -> None:
    """Cancel `tasks` and wait until every one has ended; their outcomes are read (so none
    is reported as never retrieved) and dropped.

    One cancel is not always enough: on Python 3.11, `asyncio.wait_for` (nats-py waits for
    every request's answer with it) returns the answer instead of raising `CancelledError`
    when the answer arrived in the same loop turn as the cancel, and a task that asks again
    in a loop then goes on as if never cancelled; waiting for it would hang the process's
    stop. So a task still running `again` seconds after a cancel is cancelled again."""
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=again)
        for task in pending:
            task.cancel()
    for task in tasks:
        if not task.cancelled():
            task.exception()

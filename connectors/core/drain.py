"""Bounded waiting for in-flight work, shared by every process's drain.

Every wait here has a bound, also after a cancellation: a task whose cancellation is swallowed
somewhere below it (a library that catches `CancelledError`, or Python 3.11's `wait_for`
returning a result that came at the same moment) keeps running, and a drain that awaited it
without a bound would keep the process alive, past SIGTERM, for as long as it likes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

log = logging.getLogger(__name__)

CANCEL_WAIT = 5.0  # how long cancelled work gets to hand its messages back


async def finish_or_cancel(
    tasks: Iterable[asyncio.Task[Any]], timeout: float, *, cancel_wait: float = CANCEL_WAIT
) -> int:
    """Let `tasks` finish within `timeout` seconds (0: no bound), cancel the rest and give
    them `cancel_wait` seconds to end; a task still running then is left behind (logged).

    Returns how many had to be cancelled; each task's own cancellation handling hands its
    message back to the broker.
    """
    pending = set(tasks)
    if not pending:
        return 0
    _, unfinished = await asyncio.wait(pending, timeout=timeout or None)
    for task in unfinished:
        task.cancel()
    if unfinished:
        ended, stuck = await asyncio.wait(unfinished, timeout=cancel_wait)
        for task in ended:  # what they raised was expected: retrieved so it is not reported
            if not task.cancelled():
                task.exception()
        if stuck:
            log.warning(
                "%d tasks did not end within %gs of being cancelled; left behind: %s",
                len(stuck),
                cancel_wait,
                ", ".join(sorted(t.get_name() for t in stuck)[:5]),
            )
    return len(unfinished)


async def bounded(work: Coroutine[Any, Any, Any], timeout: float, what: str) -> None:
    """Run `work` (closing a client, say) for at most `timeout` seconds, then leave it,
    cancelled but not awaited: it may not end when told to."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        log.warning("%s did not end within %gs; left behind", what, timeout)
    elif not task.cancelled() and (error := task.exception()) is not None:
        log.warning("%s failed: %s", what, error)

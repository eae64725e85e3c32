"""Bounded waiting for in-flight work, shared by every process's drain."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def finish_or_cancel(tasks: Iterable[asyncio.Task[Any]], timeout: float) -> int:
    """Let `tasks` finish within `timeout` seconds (0: no bound), cancel the rest.

    Returns how many had to be cancelled; each task's own cancellation handling hands its
    message back to the broker.
    """
    pending = set(tasks)
    if not pending:
        return 0
    _, unfinished = await asyncio.wait(pending, timeout=timeout or None)
    for task in unfinished:
        task.cancel()
    await asyncio.gather(*unfinished, return_exceptions=True)
    return len(unfinished)

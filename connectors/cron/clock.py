"""Time as the cron connector sees it, injected so tests can move it without waiting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

# Sleeps are cut into pieces this long, so a wall-clock jump is noticed within one of them.
SLEEP_PIECE_SECONDS = 5.0


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""

    async def sleep_until(self, when: datetime) -> None:
        """Return once `now()` has reached `when`."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        # Polling on purpose: the wall clock, not the event loop's clock, decides.
        while (left := (when - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, SLEEP_PIECE_SECONDS))

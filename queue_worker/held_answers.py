"""Answers the worker holds after their invocation, while their outcome is recorded.

A function's answer stays in memory until its callback is delivered (or given up) and its
message acknowledged, and the invocation slot is free by then, so a slow or absent callback
receiver would otherwise let answers pile up. Past either bound, a count (at least 64, four per
slot) or `max_held_answer_bytes`, the worker starts no new call and pulls no new message until
some answers are done: it slows down rather than fill its memory. Calls already running when
the bound is reached still finish, so what is held can pass the byte bound by at most
`max_inflight` answers (each at most `max_response_bytes`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("ferry.queue_worker")

PER_SLOT = 4
AT_LEAST = 64


class HeldAnswers:
    """Counts held answers and their bytes; `on_room` is called when it stops being full."""

    def __init__(self, max_inflight: int, max_bytes: int, on_room: Callable[[], None]) -> None:
        self.count_limit = max(AT_LEAST, PER_SLOT * max_inflight)
        self.byte_limit = max_bytes
        self.count = 0
        self.bytes = 0
        self._on_room = on_room

    @property
    def full(self) -> bool:
        return self.count >= self.count_limit or self.bytes >= self.byte_limit

    def add(self, size: int) -> None:
        was_full = self.full
        self.count += 1
        self.bytes += size
        if self.full and not was_full:
            log.warning(
                "%d answers (%d bytes) are waiting on their callbacks; starting no new calls "
                "until some are delivered (limits: %d answers, max_held_answer_bytes=%d)",
                self.count,
                self.bytes,
                self.count_limit,
                self.byte_limit,
            )

    def remove(self, size: int) -> None:
        was_full = self.full
        self.count -= 1
        self.bytes -= size
        if was_full and not self.full:
            self._on_room()

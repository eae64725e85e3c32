"""Keeps held JetStream messages from being redelivered while they are worked on.

One task for the whole worker, not one per message: every `interval` it sends `in_progress`
for each message held longer than `interval`, which resets the server's ack timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from connectors.core.supervision import cancel_and_wait

log = logging.getLogger(__name__)


class ProgressKeeper:
    def __init__(self, ack_wait: float) -> None:
        self.interval = max(ack_wait / 3, 0.3)
        self._held: dict[int, tuple[Msg, float]] = {}  # by id(): Msg is not hashable
        self._task: asyncio.Task[None] | None = None

    def hold(self, msg: Msg) -> None:
        self._held[id(msg)] = (msg, time.monotonic())

    def release(self, msg: Msg) -> None:
        self._held.pop(id(msg), None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="jetstream-in-progress")

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The long-lived task to watch (it ends only when `stop` cancels it)."""
        return [self._task] if self._task is not None else []

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            due = time.monotonic() - self.interval
            for key, (msg, since) in list(self._held.items()):
                if since <= due and key in self._held:
                    with contextlib.suppress(NatsError, TimeoutError):
                        await msg.in_progress()
                    if key in self._held:
                        self._held[key] = (msg, time.monotonic())

"""Deletes finished messages of one queue in batches of up to ten.

A message is deleted only when every matched function has a final outcome; many finish at
nearly the same time, so waiting a few milliseconds to share one `DeleteMessageBatch` saves
calls without holding anything back noticeably. Each caller awaits its own deletion, so drain
knows when every finished message is really gone.
"""

from __future__ import annotations

import asyncio
import logging

from connectors.sqs.client import SqsClient, SqsError

log = logging.getLogger("ferry.sqs")

BATCH_SIZE = 10
LINGER_SECONDS = 0.02


class BatchDeleter:
    def __init__(self, client: SqsClient, url: str) -> None:
        self.client = client
        self.url = url
        self._pending: list[tuple[str, str, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def delete(self, message_id: str, receipt: str) -> bool:
        """Queue one deletion and wait for it; False if SQS did not delete the message."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((message_id, receipt, done))
        if len(self._pending) >= BATCH_SIZE:
            self._send(self._take())
        elif self._flusher is None:
            self._flusher = asyncio.create_task(self._linger())
        return await asyncio.shield(done)

    def _take(self) -> list[tuple[str, str, asyncio.Future[bool]]]:
        batch, self._pending = self._pending[:BATCH_SIZE], self._pending[BATCH_SIZE:]
        return batch

    async def _linger(self) -> None:
        try:
            await asyncio.sleep(LINGER_SECONDS)
        finally:
            self._flusher = None
        while self._pending:
            self._send(self._take())

    def _send(self, batch: list[tuple[str, str, asyncio.Future[bool]]]) -> None:
        task = asyncio.create_task(self._delete(batch))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _delete(self, batch: list[tuple[str, str, asyncio.Future[bool]]]) -> None:
        entries = [(str(i), receipt) for i, (_, receipt, _) in enumerate(batch)]
        failed: set[int] = set()
        try:
            for failure in await self.client.delete_batch(self.url, entries):
                index = int(failure.split(":", 1)[0])
                failed.add(index)
                log.warning(
                    "could not delete message %s (it will come back): %s",
                    batch[index][0],
                    failure,
                )
        except SqsError as exc:
            log.warning("could not delete %d messages (they will come back): %s", len(batch), exc)
            failed = set(range(len(batch)))
        for i, (_, _, done) in enumerate(batch):
            if not done.done():
                done.set_result(i not in failed)

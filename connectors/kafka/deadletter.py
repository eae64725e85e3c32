"""Where a record goes when a function's outcome is a final failure.

With `dead_letter_topic` the record is re-produced there (same key, value and headers; a
tombstone stays a tombstone, a null header value stays null) with headers that name the
function, the reason and the source position, and the write is confirmed before the source
offset may be committed. Without it the failure is logged and counted: either way the record
is recorded as dead with its reason before its offset moves.

A write is retried while the broker may still take it (unreachable, leader moving). A copy
that can never be written (too large for the producer or the broker) is replaced by a dead
letter without the record's key, value and headers that says so (`Ferry-Value-Omitted`) and
names its coordinates, so the partition moves on and the record is still found.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer

from connectors.core.connector_metrics import ConnectorMetrics
from connectors.core.delivery import Abandoned, Delivery
from connectors.kafka.client import KafkaUnavailable, RecordRefused, produce
from connectors.kafka.stalls import Stalls

log = logging.getLogger("ferry.kafka")

WRITE_RETRY_SECONDS = 1.0
OMITTED = "Ferry-Value-Omitted"

Headers = list[tuple[str, bytes | None]]


class DeadLetters:
    def __init__(
        self,
        producer: AIOKafkaProducer | None,
        topic: str,
        metrics: ConnectorMetrics,
        stopping: Callable[[], bool],
        stalls: Stalls | None = None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.metrics = metrics
        self._stopping = stopping
        self.stalls = stalls if stalls is not None else Stalls()  # partitions waiting on a write

    async def record(
        self,
        delivery: Delivery,
        *,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> None:
        """Record `delivery` as dead; returns only once that is durable (or logged)."""
        fn = delivery.function.qualified
        source = f"{delivery.event.topic}/{partition}@{offset}"
        if not self.topic or self.producer is None:
            log.error("dead letter (no dead_letter_topic): %s %s: %s", fn, source, _why(delivery))
            self.metrics.dead_letters.labels(fn, "log").inc()
            return
        extra: Headers = [
            ("Ferry-Dead-Reason", _utf8(_why(delivery))),
            ("Ferry-Function", _utf8(fn)),
            ("Ferry-Attempts", str(delivery.result.attempt).encode()),
            ("Ferry-Last-Status", str(delivery.result.reported_status).encode()),
            ("Ferry-Source-Topic", _utf8(delivery.event.topic)),
            ("Ferry-Source-Partition", str(partition).encode()),
            ("Ferry-Source-Offset", str(offset).encode()),
        ]
        kept: Headers = [(n, v) for n, v in headers if not n.startswith("Ferry-")]
        try:
            await self._write(value, key, kept + extra, source)
        except RecordRefused as exc:
            log.error("dead letter for %s cannot be written with its value: %s", source, exc)
            note = f"the copy of the record ({_size(key, value, headers)} bytes) was refused: {exc}"
            try:
                await self._write(b"", None, [*extra, (OMITTED, _utf8(note))], source)
            except RecordRefused as again:
                log.error(
                    "dead letter (not writable: %s): %s %s: %s", again, fn, source, _why(delivery)
                )
                self.metrics.dead_letters.labels(fn, "log").inc()
                return
        log.error("dead-lettered %s %s to %s: %s", fn, source, self.topic, _why(delivery))
        self.metrics.dead_letters.labels(fn, self.topic).inc()

    async def _write(
        self, value: bytes | None, key: bytes | None, headers: Headers, source: str
    ) -> None:
        """Write until the broker confirms; `RecordRefused` when it never can, `Abandoned`
        when the connector stops while the broker is unavailable. While a write takes longer
        than `WRITE_RETRY_SECONDS`, or waits to be tried again, the source partition is held
        in `stalls`: it cannot move on until the write lands."""
        assert self.producer is not None
        partition = source.rpartition("@")[0]
        while True:
            write = asyncio.ensure_future(
                produce(self.producer, self.topic, value, key=key, headers=headers)
            )
            try:
                done, _ = await asyncio.wait({write}, timeout=WRITE_RETRY_SECONDS)
                if not done:
                    with self.stalls.hold(partition):
                        await write
                write.result()
                return
            except KafkaUnavailable as exc:
                if self._stopping():
                    raise Abandoned(f"dead letter for {source} not written: {exc}") from None
                log.warning("dead letter for %s not written yet (%s); retrying", source, exc)
                with self.stalls.hold(partition):
                    await asyncio.sleep(WRITE_RETRY_SECONDS)
            finally:
                write.cancel()  # only still running if this task was cancelled


def _size(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]
) -> int:
    return len(key or b"") + len(value or b"") + sum(len(n) + len(v or b"") for n, v in headers)


def _utf8(text: str) -> bytes:
    """Header bytes for text that may quote input: a lone surrogate is escaped, never an
    exception that would leave the record without its dead letter."""
    return text.encode("utf-8", "backslashreplace")


def _why(delivery: Delivery) -> str:
    return delivery.outcome.reason or f"function returned {delivery.result.reported_status}"

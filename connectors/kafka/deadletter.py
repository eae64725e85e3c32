"""Where a record goes when a function's outcome is a final failure.

With `dead_letter_topic` the record is re-produced there (same key, value and headers) with
headers that name the function, the reason and the source position, and the write is confirmed
before the source offset may be committed. Without it the failure is logged and counted:
either way the record is recorded as dead with its reason before its offset moves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from connectors.core.connector_metrics import ConnectorMetrics
from connectors.core.controller import Abandoned, Delivery

log = logging.getLogger("ferry.kafka")

WRITE_RETRY_SECONDS = 1.0


class DeadLetters:
    def __init__(
        self,
        producer: AIOKafkaProducer | None,
        topic: str,
        metrics: ConnectorMetrics,
        stopping: Callable[[], bool],
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.metrics = metrics
        self._stopping = stopping

    async def record(
        self,
        delivery: Delivery,
        *,
        partition: int,
        offset: int,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> None:
        """Record `delivery` as dead; returns only once that is durable (or logged)."""
        fn = delivery.function.qualified
        source = f"{delivery.event.topic}/{partition}@{offset}"
        if not self.topic or self.producer is None:
            log.error("dead letter (no dead_letter_topic): %s %s: %s", fn, source, _why(delivery))
            self.metrics.dead_letters.labels(fn, "log").inc()
            return
        extra = [
            ("Ferry-Dead-Reason", _why(delivery).encode()),
            ("Ferry-Function", fn.encode()),
            ("Ferry-Attempts", str(delivery.result.attempt).encode()),
            ("Ferry-Last-Status", str(delivery.result.reported_status).encode()),
            ("Ferry-Source-Topic", delivery.event.topic.encode()),
            ("Ferry-Source-Partition", str(partition).encode()),
            ("Ferry-Source-Offset", str(offset).encode()),
        ]
        kept = [(n, v or b"") for n, v in headers if not n.startswith("Ferry-")]
        while True:
            try:
                await self.producer.send_and_wait(
                    self.topic, delivery.event.body, key=key, headers=kept + extra
                )
                break
            except KafkaError as exc:
                if self._stopping():
                    raise Abandoned(f"dead letter for {source} not written: {exc}") from None
                log.warning("dead letter for %s not written yet (%s); retrying", source, exc)
                await asyncio.sleep(WRITE_RETRY_SECONDS)
        log.error("dead-lettered %s %s to %s: %s", fn, source, self.topic, _why(delivery))
        self.metrics.dead_letters.labels(fn, self.topic).inc()


def _why(delivery: Delivery) -> str:
    return delivery.outcome.reason or f"function returned {delivery.result.reported_status}"

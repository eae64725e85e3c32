"""One fetched record to a final outcome, then its offset finished.

Every subscribed function is invoked with in-process retries (`Controller.dispatch`); a record
older than `max_event_age` gets a failed delivery per function instead, none invoked. Each
final failure is recorded as dead (`deadletter.py`), and only then is the offset finished in
the partition's ledger (committable once everything before it is), which may resume a paused
partition (`pauses.py`). An error nothing foresaw is a failed attempt of the whole record, so
the partition never waits on it for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import NamedTuple

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from connectors.core import tracing
from connectors.core.controller import Controller
from connectors.core.delivery import Abandoned, Delivery, unexpected_error
from connectors.core.staleness import expired_deliveries, staleness
from connectors.kafka.config import KafkaSettings
from connectors.kafka.deadletter import DeadLetters
from connectors.kafka.ledger import CommitTracker, PartitionLedger
from connectors.kafka.metrics import KafkaMetrics
from connectors.kafka.pauses import PartitionPauses
from connectors.kafka.records import partition_source, record_event, record_span
from connectors.kafka.stalls import Stalls

log = logging.getLogger("ferry.kafka")


class Work(NamedTuple):
    """One fetched record and the ledger of the ownership it was fetched under (a named
    tuple: one is made per record, and a tuple is the cheapest immutable value to make)."""

    partition: TopicPartition
    record: ConsumerRecord[bytes, bytes]
    ledger: PartitionLedger


async def pause_for(stopping: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less if `stopping` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


class RecordProcessor:
    """What the lanes run for each record (`process`); `dead` is set by `KafkaConnector.start`
    (it needs the producer)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        controller: Controller,
        *,
        owned: set[TopicPartition],
        tracker: CommitTracker[TopicPartition],
        pauses: PartitionPauses[TopicPartition],
        stalls: Stalls,
        kafka_metrics: KafkaMetrics,
        stopping: asyncio.Event,
    ) -> None:
        self.kafka = kafka
        self.controller = controller
        self.metrics = controller.metrics
        self._owned = owned  # the connector's, changed only by its rebalances
        self.tracker = tracker
        self.pauses = pauses
        self.stalls = stalls
        self.kafka_metrics = kafka_metrics
        self._stopping = stopping
        self.dead: DeadLetters | None = None

    async def process(self, work: Work) -> None:
        """Every subscribed function to a final outcome, failures recorded as dead, then
        the offset is finished (committable once everything before it is). An error nothing
        foresaw is a failed attempt of the whole record (`_failed_unexpectedly`): the
        partition never waits on it for good. (The delivery is written out here, not in a
        coroutine of its own: this runs for every record.)"""
        failures = 0
        record = work.record
        while True:
            try:
                headers = record.headers or ()
                event = record_event(
                    record.topic, record.partition, record.offset, record.key, record.value, headers
                )
                span = record_span(record, self.kafka.group) if tracing.ENABLED else None
                try:
                    stale = self._staleness(record.timestamp)
                    if stale is None:
                        deliveries = await self.controller.dispatch(event)
                    else:  # too old to deliver: a failed delivery per function, none invoked
                        self.controller.metrics.received.inc(event.topic)  # as `dispatch` does
                        functions = self.controller.match(event.topic)
                        deliveries = expired_deliveries(self.controller, event, functions, stale)
                    for delivery in deliveries:
                        if not delivery.ok:
                            await self._dead_letter(delivery, record, headers)
                finally:
                    if span is not None:
                        span.end()
            except Abandoned as exc:
                log.info("left uncommitted for redelivery: %s", exc)
                return
            except Exception as exc:
                failures += 1
                if await self._failed_unexpectedly(work, exc, failures):
                    continue
                return
            self._finished(work)
            return

    def _staleness(self, timestamp: int) -> str | None:
        """Why a record of `timestamp` (Unix ms) is too old to deliver, or None."""
        max_age = self.kafka.max_event_age
        if max_age <= 0:  # no limit (the default): no clock read
            return None
        return staleness(max_age, timestamp / 1000, time.time())

    async def _dead_letter(
        self,
        delivery: Delivery,
        record: ConsumerRecord[bytes, bytes],
        headers: Sequence[tuple[str, bytes | None]],
    ) -> None:
        assert self.dead is not None
        await self.dead.record(
            delivery,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=headers,
        )

    async def _failed_unexpectedly(self, work: Work, exc: Exception, failures: int) -> bool:
        """Retry the record after the policy's back-off (True), or, once the attempts are
        spent, record it as dead in the log with the reason and finish it (False); False
        too when stopping (it stays uncommitted). While it waits, its partition counts as
        stalled (`/readyz`, `kafka_connector_stalled_partitions`)."""
        record = work.record
        source = f"{record.topic}/{record.partition}@{record.offset}"
        self.kafka_metrics.record_errors.inc()
        outcome = self.controller.policy.decide(
            status=None, attempt=failures, error=unexpected_error(exc)
        )
        if outcome.final:
            log.error("dead letter (log): record %s: %s", source, outcome.reason, exc_info=exc)
            self.metrics.dead_letters.labels("", "log").inc()
            self._finished(work)
            return False
        log.error(
            "record %s: %s (attempt %d), again in %.2fs",
            source,
            outcome.reason,
            failures,
            outcome.delay,
            exc_info=exc,
        )
        with self.stalls.hold(partition_source(work.partition)):
            await pause_for(self._stopping, outcome.delay)
        return not self._stopping.is_set() and not self.controller.stopping

    def _finished(self, work: Work) -> None:
        """The record is final: its offset may be committed once those before it are, and
        its partition resumes at once if this brought it below the pause's low mark."""
        work.ledger.finish(work.record.offset)
        partition = work.partition
        if (
            partition in self.pauses.paused
            and partition in self._owned
            and self.tracker.ledger(partition) is work.ledger
        ):
            self.pauses.finished(partition, work.ledger.pending)

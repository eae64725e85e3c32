"""Committing what is final: each partition's finished prefix, and the lag behind it.

A commit task commits every `commit_interval` the offsets the ledgers say are due (checked
first against offsets that went back: `rewinds.py`), then reports each partition's lag.
Rebalances and drains commit what is final before letting a partition go. A failed commit
is counted and tried again at the next round.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from connectors.core.connector_metrics import ConnectorMetrics
from connectors.kafka.ledger import CommitTracker
from connectors.kafka.metrics import KafkaMetrics
from connectors.kafka.records import partition_source
from connectors.kafka.rewinds import OffsetRewinds

log = logging.getLogger("ferry.kafka")


class Commits:
    """Commits the tracker's due offsets on the consumer (set by `KafkaConnector.start`)."""

    def __init__(
        self,
        interval: float,
        tracker: CommitTracker[TopicPartition],
        rewinds: OffsetRewinds,
        metrics: ConnectorMetrics,
        kafka_metrics: KafkaMetrics,
    ) -> None:
        self.interval = interval
        self.tracker = tracker
        self.rewinds = rewinds
        self.metrics = metrics
        self.kafka_metrics = kafka_metrics
        self.consumer: AIOKafkaConsumer | None = None

    async def commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.commit()
            self.report_lag()

    async def commit(self, partitions: list[TopicPartition] | None = None) -> None:
        offsets = self.tracker.due(iter(partitions) if partitions is not None else None)
        if not offsets or self.consumer is None:
            return
        offsets = await self.rewinds.still_ours(self.consumer, offsets)
        if not offsets:
            return
        try:
            await self.consumer.commit(dict(offsets))
        except KafkaError as exc:
            self.kafka_metrics.commit_failures.inc()
            log.warning("commit of %s failed, retrying later: %s", _show(offsets), exc)
            return
        self.tracker.committed(offsets)
        self.kafka_metrics.commits.inc()
        log.debug("committed %s", _show(offsets))

    def report_lag(self) -> None:
        """Records at the broker past what this process has committed, per partition."""
        if self.consumer is None:
            return
        for partition in self.tracker.partitions():
            ledger = self.tracker.ledger(partition)
            highwater = self.consumer.highwater(partition)
            if ledger is None or highwater is None:
                continue
            base = ledger.committed if ledger.committed is not None else ledger.first
            if base is not None:
                self.metrics.lag.labels(partition_source(partition)).set(max(highwater - base, 0))


def _show(offsets: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{partition_source(p)}@{o}" for p, o in sorted(offsets.items()))

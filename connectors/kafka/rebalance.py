"""Group rebalances: partitions this process gains and loses, and what it does for each.

A lost partition starts no more work; its in-flight records get `revoke_timeout` to finish,
what is final is committed, then it is forgotten (ledger, pause, lag). A gained partition
gets a fresh ledger and lane group, and its group offset is noted (`rewinds.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from connectors.core.connector_metrics import ConnectorMetrics
from connectors.kafka.commits import Commits
from connectors.kafka.lanes import LaneScheduler
from connectors.kafka.ledger import CommitTracker
from connectors.kafka.metrics import KafkaMetrics
from connectors.kafka.pauses import PartitionPauses
from connectors.kafka.processing import Work
from connectors.kafka.records import partition_source
from connectors.kafka.rewinds import OffsetRewinds

log = logging.getLogger("ferry.kafka")


class Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """The consumer's rebalance listener; the only one that changes `owned`."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        revoke_timeout: float,
        *,
        owned: set[TopicPartition],
        tracker: CommitTracker[TopicPartition],
        lanes: LaneScheduler[Work],
        pauses: PartitionPauses[TopicPartition],
        commits: Commits,
        rewinds: OffsetRewinds,
        metrics: ConnectorMetrics,
        kafka_metrics: KafkaMetrics,
    ) -> None:
        self.consumer = consumer
        self.revoke_timeout = revoke_timeout
        self._owned = owned
        self.tracker = tracker
        self.lanes = lanes
        self.pauses = pauses
        self.commits = commits
        self.rewinds = rewinds
        self.metrics = metrics
        self.kafka_metrics = kafka_metrics

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.partitions_taken(assigned)

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Stop starting work for lost partitions, let in-flight work finish within
        `revoke_timeout`, commit what is final, then forget them."""
        lost = [p for p in revoked if p in self._owned]
        if not lost:
            return
        self._owned.difference_update(lost)
        self.kafka_metrics.rebalances.inc(len(lost))
        stuck = await asyncio.gather(
            *(self.lanes.close_group(p, self.revoke_timeout) for p in lost)
        )
        if sum(stuck):
            self.kafka_metrics.revoke_cancelled.inc(sum(stuck))
            log.warning("%d lanes unfinished at revoke_timeout stay uncommitted", sum(stuck))
        await self.commits.commit(lost)
        for partition in lost:
            self.tracker.release(partition)
            self.pauses.forget(partition)
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(partition_source(partition))
        self.kafka_metrics.assigned.set(len(self._owned))
        log.info("partitions revoked: %s", ", ".join(sorted(partition_source(p) for p in lost)))

    async def partitions_taken(self, assigned: set[TopicPartition]) -> None:
        """Own the newly assigned partitions, their group offsets noted (`rewinds`)."""
        fresh = self.partitions_assigned(assigned)
        await self.rewinds.baseline(self.consumer, fresh)

    def partitions_assigned(self, assigned: set[TopicPartition]) -> list[TopicPartition]:
        """Own the newly assigned partitions; returns them."""
        fresh = [p for p in assigned if p not in self._owned]
        for partition in fresh:
            self.tracker.own(partition)
            self.lanes.open(partition)
            self._owned.add(partition)
        self.kafka_metrics.assigned.set(len(self._owned))
        if fresh:
            log.info(
                "partitions assigned: %s", ", ".join(sorted(partition_source(p) for p in fresh))
            )
        return fresh

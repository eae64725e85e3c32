"""Offsets that go back: a partition's topic deleted and created again, or its position reset.

A recreated topic starts again at offset 0, and a consumer that was at offset 50 either gets
records it has "already seen" (if its position was reset) or waits at 50 while the new log
grows past it, silently skipping 0-49. Kafka's clients before topic IDs cannot tell two logs
of one name apart, so the connector watches for what a new log looks like from outside: a
record at an offset already passed (`KafkaConnector._submit`), an end (high watermark) before
records already received, or, just before a commit, a committed offset the broker no longer
has (Kafka drops a deleted topic's offsets; the one expected is what this process committed,
or what the group had when the partition was assigned). Each restarts the partition's ledger,
and the last two read the partition again from its beginning; each is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from connectors.kafka.ledger import CommitTracker, PartitionLedger
from connectors.kafka.metrics import KafkaMetrics
from connectors.kafka.records import partition_source

log = logging.getLogger("ferry.kafka")

COMMIT_CHECK_SECONDS = 5.0  # reading the broker's committed offsets before a commit


class OffsetRewinds:
    def __init__(self, tracker: CommitTracker[TopicPartition], metrics: KafkaMetrics) -> None:
        self.tracker = tracker
        self.metrics = metrics

    def restart(self, partition: TopicPartition, why: str) -> PartitionLedger:
        """The partition's offsets went back: a fresh ledger, so records of the new run are
        neither skipped as seen nor committed past on the strength of the old run."""
        self.metrics.offset_restarts.inc()
        log.warning(
            "%s went back (%s): the topic was deleted and created again, or the position was "
            "reset; its records are invoked again from there",
            partition_source(partition),
            why,
        )
        return self.tracker.restart(partition)

    async def notice_shrunk(
        self, consumer: AIOKafkaConsumer, owned: Iterable[TopicPartition]
    ) -> None:
        """A partition whose end is now before records it already gave us was deleted and
        created again (or truncated): start over and read it from its beginning, instead of
        waiting at an offset the new log reaches only later."""
        for partition in owned:
            ledger = self.tracker.ledger(partition)
            end = consumer.highwater(partition)
            if ledger is None or end is None or ledger.next_offset is None:
                continue
            if end < ledger.next_offset:
                self.restart(partition, f"its end is offset {end}, before {ledger.next_offset}")
                await self._read_from_beginning(consumer, partition)

    async def still_ours(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """The offsets that may be committed. A partition committed before whose offset the
        broker no longer has was deleted and perhaps created again: committing the old
        position there would skip the new records before it, so it starts over from its
        beginning instead. If the broker cannot say, nothing committed before is committed
        this round (the next round tries again)."""
        checked = [p for p in offsets if self._committed_before(p)]
        if not checked:
            return offsets
        try:
            found = await asyncio.wait_for(
                asyncio.gather(*(consumer.committed(p) for p in checked)), COMMIT_CHECK_SECONDS
            )
        except (KafkaError, TimeoutError) as exc:
            self.metrics.commit_failures.inc()
            log.warning("committed offsets not readable, committing later: %s", exc or "timeout")
            return {p: o for p, o in offsets.items() if p not in checked}
        for partition, broker_offset in zip(checked, found, strict=True):
            if broker_offset is None and self.tracker.ledger(partition) is not None:
                del offsets[partition]
                self.restart(partition, "the broker no longer has its committed offset")
                await self._read_from_beginning(consumer, partition)
        return offsets

    async def baseline(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        """Note the group's committed offset of newly owned partitions as theirs, so the
        first commit of a new owner is checked too (a topic recreated right after a restart
        or a rebalance). If it cannot be read, that first commit goes unchecked."""
        if not partitions:
            return
        try:
            found = await asyncio.wait_for(
                asyncio.gather(*(consumer.committed(p) for p in partitions)),
                COMMIT_CHECK_SECONDS,
            )
        except (KafkaError, TimeoutError) as exc:
            log.warning("committed offsets not readable at assignment: %s", exc or "timeout")
            return
        for partition, broker_offset in zip(partitions, found, strict=True):
            ledger = self.tracker.ledger(partition)
            if ledger is not None and ledger.committed is None and broker_offset is not None:
                ledger.committed = broker_offset

    def _committed_before(self, partition: TopicPartition) -> bool:
        ledger = self.tracker.ledger(partition)
        return ledger is not None and ledger.committed is not None

    async def _read_from_beginning(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition
    ) -> None:
        try:
            await consumer.seek_to_beginning(partition)
        except (KafkaError, IllegalStateError) as exc:  # revoked meanwhile
            log.warning("%s not read from its beginning: %s", partition_source(partition), exc)

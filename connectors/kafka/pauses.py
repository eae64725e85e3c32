"""Back-pressure per partition: pause fetching a partition that holds too much, resume it soon.

A partition holding `max_uncommitted` records is paused; it is resumed once it holds fewer than
half of that. The resume happens at the finish that brings it there, not at the fetch loop's
next round: that loop may be waiting up to its fetch timeout for the partitions still fetching,
and with every partition paused and its records finished, the lanes would sit idle for that
long (half a second at a time, measured in `bench/kafka_connector.py`).

`PartitionPauses` keeps the decision apart from Kafka; `Backpressure` applies it to the
consumer and the records each owned partition holds (its ledger's unfinished records).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.kafka.ledger import CommitTracker

P = TypeVar("P", bound=Hashable)

FETCH_MAX_RECORDS = 500


class PartitionPauses(Generic[P]):
    """Which partitions are paused; `pause`/`resume` tell the consumer (its partitions)."""

    def __init__(self, limit: int, pause: Callable[[P], None], resume: Callable[[P], None]) -> None:
        self.limit = limit
        self.low = max(limit // 2, 1)  # resume below this
        self.paused: set[P] = set()
        self._pause = pause
        self._resume = resume

    def apply(self, held: Iterable[tuple[P, int]]) -> int:
        """Pause partitions holding `limit` records, resume those below half; return how
        many more records the partitions still fetching may hold."""
        room = 0
        for partition, count in held:
            if partition not in self.paused and count >= self.limit:
                self._pause(partition)
                self.paused.add(partition)
            elif partition in self.paused and count < self.low:
                self._resume(partition)
                self.paused.discard(partition)
            if partition not in self.paused:
                room += self.limit - count
        return room

    def finished(self, partition: P, count: int) -> bool:
        """A record of `partition` (still owned) finished and it now holds `count`: resume
        it at once if it was paused and is below half. True if it was resumed."""
        if partition not in self.paused or count >= self.low:
            return False
        self._resume(partition)
        self.paused.discard(partition)
        return True

    def forget(self, partition: P) -> None:
        """The partition is no longer ours (revoked): nothing to resume later."""
        self.paused.discard(partition)


class Backpressure:
    """Pauses and resumes the owned partitions on the consumer by the records each holds
    (`consumer` is set by `KafkaConnector.start`)."""

    def __init__(
        self,
        limit: int,
        tracker: CommitTracker[TopicPartition],
        owned: set[TopicPartition],
    ) -> None:
        self.tracker = tracker
        self._owned = owned  # the connector's, changed only by its rebalances
        self.consumer: AIOKafkaConsumer | None = None
        self.pauses: PartitionPauses[TopicPartition] = PartitionPauses(
            limit, self._pause, self._resume
        )

    def room(self) -> int:
        """Pause partitions holding `max_uncommitted` records, resume them below half;
        return how many records the next fetch may bring."""
        room = self.pauses.apply((p, self._held(p)) for p in list(self._owned))
        return max(1, min(room, FETCH_MAX_RECORDS))

    def _held(self, partition: TopicPartition) -> int:
        ledger = self.tracker.ledger(partition)
        return ledger.pending if ledger is not None else 0

    def _pause(self, partition: TopicPartition) -> None:
        assert self.consumer is not None
        self.consumer.pause(partition)

    def _resume(self, partition: TopicPartition) -> None:
        assert self.consumer is not None
        self.consumer.resume(partition)

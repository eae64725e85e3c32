"""Back-pressure per partition: paused at max_uncommitted, resumed below half at once."""

from __future__ import annotations

from connectors.kafka.pauses import PartitionPauses


class Consumer:
    """Stands for the consumer's pause and resume: records which partitions fetch."""

    def __init__(self) -> None:
        self.paused: set[str] = set()
        self.resumes: list[str] = []

    def pause(self, partition: str) -> None:
        self.paused.add(partition)

    def resume(self, partition: str) -> None:
        self.paused.discard(partition)
        self.resumes.append(partition)


def test_a_partition_holding_the_limit_is_paused_and_leaves_no_room() -> None:
    consumer = Consumer()
    pauses = PartitionPauses(10, consumer.pause, consumer.resume)
    room = pauses.apply([("p0", 10), ("p1", 4)])
    assert consumer.paused == {"p0"} == pauses.paused
    assert room == 6


def test_a_paused_partition_resumes_at_the_finish_that_brings_it_below_half() -> None:
    consumer = Consumer()
    pauses = PartitionPauses(10, consumer.pause, consumer.resume)
    pauses.apply([("p0", 10)])
    assert not pauses.finished("p0", 5)  # half: still paused
    assert consumer.paused == {"p0"}
    assert pauses.finished("p0", 4)  # below half: fetching again without a fetch round
    assert consumer.paused == set() == pauses.paused
    assert not pauses.finished("p0", 3)  # resumed once, not again
    assert consumer.resumes == ["p0"]


def test_a_partition_that_was_never_paused_is_not_resumed() -> None:
    consumer = Consumer()
    pauses = PartitionPauses(10, consumer.pause, consumer.resume)
    pauses.apply([("p0", 9)])
    assert not pauses.finished("p0", 0)
    assert consumer.resumes == []


def test_the_fetch_round_resumes_a_partition_below_half_too() -> None:
    consumer = Consumer()
    pauses = PartitionPauses(10, consumer.pause, consumer.resume)
    pauses.apply([("p0", 12)])
    assert pauses.apply([("p0", 4)]) == 6
    assert consumer.resumes == ["p0"]


def test_a_forgotten_partition_is_not_resumed_later() -> None:
    consumer = Consumer()
    pauses = PartitionPauses(10, consumer.pause, consumer.resume)
    pauses.apply([("p0", 10)])
    pauses.forget("p0")
    assert not pauses.finished("p0", 0)
    assert consumer.resumes == []


def test_a_limit_of_one_resumes_when_nothing_is_held() -> None:
    consumer = Consumer()
    pauses = PartitionPauses(1, consumer.pause, consumer.resume)
    pauses.apply([("p0", 1)])
    assert not pauses.finished("p0", 1)
    assert pauses.finished("p0", 0)

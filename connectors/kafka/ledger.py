"""Which offsets may be committed: the lowest unfinished record of each partition bounds it.

Records of one partition can finish out of order (`key` and `none` ordering, or several
functions per record), but Kafka keeps one committed offset per partition. A `PartitionLedger`
remembers every record handed out, in offset order, and advances the commit position only over
a run of finished records, so a commit never passes unfinished work.

A ledger belongs to one run of offsets of one ownership of a partition: when the partition is
revoked, or its offsets go back (its topic was deleted and created again, or the consumer's
position was reset), the tracker drops it, and a late completion lands on the dropped ledger
without touching its successor. The successor starts over at the offsets the partition has now,
so a record of the new run is never taken for one of the old run already handed out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class PartitionLedger:
    """Offsets of one partition handed out and not yet committable."""

    def __init__(self) -> None:
        self._open: deque[int] = deque()
        self._finished: set[int] = set()
        self._last_added = -1
        self.first: int | None = None  # the first offset handed out under this ownership
        self.position: int | None = None  # next offset to commit (last finished run + 1)
        self.committed: int | None = None  # what the broker last accepted from us
        self.revoked = False

    @property
    def next_offset(self) -> int | None:
        """The offset after the last one handed out (None before the first)."""
        return self._last_added + 1 if self.first is not None else None

    def went_back(self, offset: int) -> bool:
        """True when `offset` is one this ledger has already passed: the partition's
        offsets went back, and the record is not one already handed out but a new one."""
        return offset <= self._last_added

    def add(self, offset: int) -> bool:
        """Track a record; False if this offset was already handed out (see `went_back`)."""
        if offset <= self._last_added:
            return False
        self._last_added = offset
        if self.first is None:
            self.first = offset
        self._open.append(offset)
        return True

    def finish(self, offset: int) -> None:
        """Record a final outcome; advance the position over the finished prefix."""
        if offset not in self._open and offset not in self._finished:
            return
        self._finished.add(offset)
        while self._open and self._open[0] in self._finished:
            done = self._open.popleft()
            self._finished.discard(done)
            self.position = done + 1

    @property
    def pending(self) -> int:
        """Records held: handed out and not yet behind the commit position."""
        return len(self._open)

    @property
    def lowest_open(self) -> int | None:
        return self._open[0] if self._open else None

    def due(self) -> int | None:
        """The position to commit, if it moved past what was committed."""
        if self.position is None or self.position == self.committed:
            return None
        return self.position


class CommitTracker(Generic[P]):
    """One ledger per owned partition."""

    def __init__(self) -> None:
        self._ledgers: dict[P, PartitionLedger] = {}

    def own(self, partition: P) -> PartitionLedger:
        """A fresh ledger for a newly assigned partition."""
        ledger = PartitionLedger()
        self._ledgers[partition] = ledger
        return ledger

    def restart(self, partition: P) -> PartitionLedger:
        """Drop the partition's ledger as if revoked and start a fresh one: its offsets went
        back, so what the old one holds or passed says nothing about the new run."""
        self.release(partition)
        return self.own(partition)

    def ledger(self, partition: P) -> PartitionLedger | None:
        return self._ledgers.get(partition)

    def release(self, partition: P) -> PartitionLedger | None:
        """Forget a revoked partition; its ledger keeps working but is no longer committed."""
        ledger = self._ledgers.pop(partition, None)
        if ledger is not None:
            ledger.revoked = True
        return ledger

    def due(self, partitions: Iterator[P] | None = None) -> dict[P, int]:
        """Commit positions that moved, for `partitions` (default: every owned one)."""
        chosen = list(partitions) if partitions is not None else list(self._ledgers)
        out: dict[P, int] = {}
        for partition in chosen:
            ledger = self._ledgers.get(partition)
            position = ledger.due() if ledger is not None else None
            if position is not None:
                out[partition] = position
        return out

    def committed(self, offsets: dict[P, int]) -> None:
        for partition, position in offsets.items():
            ledger = self._ledgers.get(partition)
            if ledger is not None:
                ledger.committed = position

    @property
    def pending(self) -> int:
        return sum(ledger.pending for ledger in self._ledgers.values())

    def partitions(self) -> list[P]:
        return list(self._ledgers)

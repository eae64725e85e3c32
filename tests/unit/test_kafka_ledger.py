"""The commit ledger: a partition's commit position never passes an unfinished record."""

from __future__ import annotations

import pytest

from connectors.kafka.ledger import CommitTracker, PartitionLedger


@pytest.mark.parametrize(
    ("added", "finished", "position", "pending"),
    [
        ([0, 1, 2], [], None, 3),
        ([0, 1, 2], [0], 1, 2),
        ([0, 1, 2], [1, 2], None, 3),  # the first is unfinished: nothing may be committed
        ([0, 1, 2], [2, 0], 1, 2),
        ([0, 1, 2], [2, 1, 0], 3, 0),
        ([5, 9, 12], [5, 9], 10, 1),  # gaps (compaction, markers) commit past the last done
        ([5, 9, 12], [12, 9, 5], 13, 0),
        ([0, 1], [7], None, 2),  # an offset never handed out changes nothing
    ],
)
def test_position_covers_only_the_finished_prefix(
    added: list[int], finished: list[int], position: int | None, pending: int
) -> None:
    ledger = PartitionLedger()
    for offset in added:
        assert ledger.add(offset)
    for offset in finished:
        ledger.finish(offset)
    assert ledger.position == position
    assert ledger.pending == pending


def test_a_refetched_offset_is_not_handed_out_twice() -> None:
    ledger = PartitionLedger()
    assert ledger.add(3)
    assert not ledger.add(3)
    assert not ledger.add(2)
    assert ledger.add(4)


def test_due_reports_a_position_once_until_it_moves() -> None:
    tracker: CommitTracker[str] = CommitTracker()
    ledger = tracker.own("p0")
    ledger.add(0)
    ledger.add(1)
    ledger.finish(0)
    assert tracker.due() == {"p0": 1}
    tracker.committed({"p0": 1})
    assert tracker.due() == {}
    ledger.finish(1)
    assert tracker.due() == {"p0": 2}


def test_a_released_partition_is_never_committed_again() -> None:
    tracker: CommitTracker[str] = CommitTracker()
    old = tracker.own("p0")
    old.add(0)
    assert tracker.release("p0") is old
    fresh = tracker.own("p0")
    old.finish(0)  # a late completion from the previous ownership
    assert old.revoked
    assert fresh.position is None
    assert tracker.due() == {}


def test_a_restarted_partition_takes_a_lower_offset_as_new_and_ignores_the_old_run() -> None:
    tracker: CommitTracker[str] = CommitTracker()
    old = tracker.own("t/0")
    for offset in (48, 49):
        assert old.add(offset)
    old.finish(48)
    assert old.went_back(10) and not old.went_back(50)
    assert old.next_offset == 50

    new = tracker.restart("t/0")
    assert old.revoked and tracker.ledger("t/0") is new
    assert new.next_offset is None and new.add(0)
    old.finish(49)  # a late completion of the old run moves nothing of the new one
    assert tracker.due() == {}
    new.finish(0)
    assert tracker.due() == {"t/0": 1}

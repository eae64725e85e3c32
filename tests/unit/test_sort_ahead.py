"""Plain-subject calls held by their lanes: the bounds, when the sorter reads on, and which
held calls must leave their lane."""

from __future__ import annotations

from nats.aio.msg import Msg

from queue_worker.lanes import Lane
from queue_worker.sort_ahead import DRAIN_SECONDS, HOLD_SECONDS, RATE_WINDOW, SortAhead


def lane() -> Lane:
    made = Lane(subject="faas-request.fn.f", durable="d", inbox="i", slots=16, adaptive=True)
    made.learn("f", {})
    made.consumer_ready = True
    return made


def message(size: int = 10) -> Msg:
    return Msg(None, subject="faas-request", data=b"x" * size)  # type: ignore[arg-type]


def test_at_most_limit_calls_and_byte_limit_bytes_are_held() -> None:
    ahead, held = SortAhead(limit=3, byte_limit=100), lane()
    assert ahead.fits(message(100)) and not ahead.fits(message(101))
    for _ in range(3):
        ahead.add(held, message(20), 0.0)
    assert not ahead.fits(message(1))  # three held
    assert ahead.room == 0
    ahead.take(held)
    assert ahead.fits(message(60)) and not ahead.fits(message(61))  # 40 of 100 bytes used


def test_held_calls_count_in_the_lanes_backlog_until_their_calls_end() -> None:
    ahead, held = SortAhead(limit=8), lane()
    for _ in range(3):
        ahead.add(held, message(), 0.0)
    assert (held.backlog, held.plain, held.waiting, held.pending) == (3, 3, 0, 3)
    assert held.room(0.0, 0) == 3  # held calls can start without asking JetStream
    held.delivered()
    ahead.take(held)  # started: in flight, still its lane's
    assert (held.backlog, held.plain, held.inflight, held.pending) == (3, 3, 1, 2)
    held.finished(plain=True)
    assert (held.backlog, held.plain, held.inflight) == (2, 2, 0)
    ahead.drop(held)  # left unrun (moved or handed back)
    assert (held.backlog, held.plain, len(held.unsorted)) == (1, 1, 1)
    assert ahead.started_total == 1 and ahead.held_total == 3


def test_mixed_functions_make_the_sorter_read_on_only_while_a_backlog_waits() -> None:
    ahead = SortAhead(limit=8)
    ahead.look(pending=0, mixed=True, now=10.0)
    assert not ahead.reading_on(10.0)
    ahead.look(pending=5, mixed=True, now=10.0)
    assert ahead.reading_on(10.0) and not ahead.reading_on(10.0 + RATE_WINDOW)


def test_a_backlog_longer_than_drain_seconds_at_the_measured_rate_makes_it_read_on() -> None:
    ahead, held = SortAhead(limit=100), lane()
    ahead.look(pending=500, mixed=False, now=10.0)  # no rate yet: nothing to judge by
    assert not ahead.reading_on(10.0)
    for _ in range(50):  # 50 held calls start in one window: 100 a second
        ahead.add(held, message(), 10.0)
        ahead.take(held)
    now = 10.0 + RATE_WINDOW
    ahead.look(pending=int(100 * DRAIN_SECONDS) - 10, mixed=False, now=now)
    assert ahead.rate == 100 and not ahead.reading_on(now)
    ahead.look(pending=int(100 * DRAIN_SECONDS) + 10, mixed=False, now=now)
    assert ahead.reading_on(now)


def test_a_window_that_began_without_a_backlog_does_not_set_the_rate() -> None:
    """An idle worker starts nothing: that says nothing about how fast it would."""
    ahead = SortAhead(limit=100)
    ahead.look(pending=0, mixed=False, now=10.0)
    ahead.look(pending=0, mixed=False, now=10.0 + RATE_WINDOW)  # idle window
    assert ahead.rate is None
    ahead.look(pending=5000, mixed=False, now=10.0 + 2 * RATE_WINDOW)
    assert ahead.rate is None and not ahead.reading_on(10.0 + 2 * RATE_WINDOW)


def test_calls_held_longer_than_hold_seconds_leave_and_the_sorter_reads_on() -> None:
    ahead, held = SortAhead(limit=8), lane()
    ahead.add(held, message(), 10.0)
    ahead.add(held, message(), 10.5)
    assert ahead.aged(held, 10.0 + HOLD_SECONDS) == []
    out = ahead.aged(held, 10.2 + HOLD_SECONDS)
    assert len(out) == 1 and len(held.unsorted) == 1 and ahead.aged_total == 1
    assert ahead.reading_on(10.2 + HOLD_SECONDS)


def test_a_paused_function_leaves_nothing_held() -> None:
    ahead, held = SortAhead(limit=8), lane()
    ahead.add(held, message(), 10.0)
    ahead.add(held, message(), 10.0)
    held.paused = True
    assert len(ahead.aged(held, 10.0)) == 2
    assert (ahead.count, held.plain, held.backlog) == (0, 0, 0)
    assert ahead.aged_total == 0  # not for age: no reason to read on
    assert not ahead.reading_on(10.0)


def test_with_fair_sort_after_zero_it_reads_on_whenever_calls_wait() -> None:
    ahead = SortAhead(limit=8, drain_seconds=0.0)
    ahead.look(pending=0, mixed=False, now=10.0)
    assert not ahead.reading_on(10.0)
    ahead.look(pending=1, mixed=False, now=10.0)  # no rate measured yet: read on all the same
    assert ahead.reading_on(10.0)


def test_the_rate_is_measured_from_the_moment_a_backlog_appears() -> None:
    """No idle stretch before the backlog counts: its first rate is known one window after it
    appeared, whatever the phase of the windows before."""
    ahead, held = SortAhead(limit=100), lane()
    ahead.look(pending=0, mixed=False, now=10.0)
    ahead.look(pending=300, mixed=False, now=10.4)  # mid-window: a new window starts now
    for _ in range(10):
        ahead.add(held, message(), 10.4)
        ahead.take(held)
    ahead.look(pending=290, mixed=False, now=10.4 + RATE_WINDOW)
    assert ahead.rate == 10 / RATE_WINDOW
    assert ahead.reading_on(10.4 + RATE_WINDOW)  # 290 calls at 20 a second: far over 2 s

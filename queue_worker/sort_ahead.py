"""Calls from the queue's plain subject held by their function's lane (fair mode), so the
common case costs no move.

A call published on the plain subject (an OpenFaaS gateway, a Go client) used to be moved to
its function's subject before it could run: one more publish, JetStream answer, ack and
delivery per call. Now the sorter first offers it to its lane, which holds it, unacknowledged
and kept in progress, and starts it when the fair order gives the lane a slot; it is
acknowledged on the plain subject like any call. The lanes hold at most `limit` such calls
(the worker's `max_inflight` plus its `prefetch`, as a static worker holds) and `byte_limit`
bytes; the sorter asks for no more than they have room for.

That alone would serve the plain subject in arrival order, which is fair only while what is
queued there runs soon. So the sorter **reads on**, asking for calls as fast as it can move
them, and moves every call that does not fit, whenever

- the plain subject's backlog (JetStream's count of calls not yet delivered, read from each
  delivery) would take more than `drain_seconds` (the setting `fair_sort_after`) to start at
  the rate held calls started in the last `RATE_WINDOW` that began with a backlog (measured
  by this worker alone, so several replicas read on sooner, never later);
- the calls read in the last `HOLD_SECONDS` belong to more than one function while a backlog
  waits (the fair order, weights and caps then need every function's calls in its lane);
- a held call waited longer than `HOLD_SECONDS` (it is moved; the other replicas can take it
  from its function's subject).

A call of a function that is paused or held back by its breaker is moved at once (it must
wait on its function's subject, where every replica and a restart find it).
"""

from __future__ import annotations

from nats.aio.msg import Msg

from queue_worker.lanes import Lane

HOLD_SECONDS = 1.0  # a call held longer is moved; mixed functions this recent mean read on
DRAIN_SECONDS = 2.0  # read on past a plain backlog this long (`fair_sort_after`)
RATE_WINDOW = 0.5  # how often the rate held calls start at is measured
HOLD_BYTES = 32 * 1024 * 1024  # bytes of messages held at most


class SortAhead:
    """What the lanes hold from the plain subject, in all, and whether the sorter reads on."""

    def __init__(
        self, limit: int, byte_limit: int = HOLD_BYTES, drain_seconds: float = DRAIN_SECONDS
    ) -> None:
        self.limit = max(1, limit)
        self.drain_seconds = drain_seconds
        self.byte_limit = byte_limit
        self.count = 0  # calls held now (not yet started)
        self.bytes = 0
        self.held_total = 0  # calls held since start (each ran, was moved or handed back)
        self.started_total = 0  # ... of them started here
        self.aged_total = 0  # ... of them moved because they waited longer than HOLD_SECONDS
        self.read_on_until = 0.0
        self.rate: float | None = None  # held calls started per second, once measured
        # when the rate's window began, the starts then, and whether a backlog waited then
        self._mark = (0.0, 0, False)

    @property
    def room(self) -> int:
        return max(0, self.limit - self.count)

    def reading_on(self, now: float) -> bool:
        return now < self.read_on_until

    def look(self, pending: int, mixed: bool, now: float) -> None:
        """The plain subject has `pending` calls not yet delivered; `mixed`: the calls read
        lately were for more than one function. Read on if either says so."""
        since, count, busy = self._mark
        if pending > 0 and not busy:  # a backlog appeared: measure from now
            self._mark = (now, self.started_total, True)
        elif now - since >= RATE_WINDOW:
            if busy:  # a window that began with a backlog: how fast held calls start
                self.rate = (self.started_total - count) / (now - since)
            self._mark = (now, self.started_total, pending > 0)
        if pending <= 0:
            return
        drain = self.drain_seconds
        slow = not drain or (self.rate is not None and pending > self.rate * drain)
        if mixed or slow:
            self.read_on_until = max(self.read_on_until, now + RATE_WINDOW)

    def fits(self, msg: Msg) -> bool:
        return self.count < self.limit and self.bytes + len(msg.data) <= self.byte_limit

    def add(self, lane: Lane, msg: Msg, now: float) -> None:
        """`msg` waits in `lane` (its backlog counts it until its call ends)."""
        lane.unsorted.append((msg, now))
        lane.plain += 1
        lane.backlog += 1
        self.count += 1
        self.bytes += len(msg.data)
        self.held_total += 1

    def take(self, lane: Lane) -> Msg:
        """The lane's oldest held call, to start now (it stays in the lane's `plain` count
        until its call ends)."""
        self.started_total += 1
        return self._pop(lane)

    def drop(self, lane: Lane) -> Msg:
        """The lane's oldest held call, leaving the lane unrun (to be moved or handed back)."""
        lane.plain -= 1
        lane.backlog = max(0, lane.backlog - 1)
        return self._pop(lane)

    def _pop(self, lane: Lane) -> Msg:
        msg, _ = lane.unsorted.popleft()
        self.count -= 1
        self.bytes -= len(msg.data)
        return msg

    def aged(self, lane: Lane, now: float) -> list[Msg]:
        """The lane's calls that must leave it: all of them while the lane is paused or held
        back by its breaker, else those held longer than `HOLD_SECONDS` (and then the sorter
        reads on for as long)."""
        if not lane.flowing:
            return [self.drop(lane) for _ in range(len(lane.unsorted))]
        oldest = now - HOLD_SECONDS
        out = []
        while lane.unsorted and lane.unsorted[0][1] < oldest:
            out.append(self.drop(lane))
        if out:
            self.aged_total += len(out)
            self.read_on_until = now + HOLD_SECONDS
        return out

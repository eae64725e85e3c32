"""Which functions get the free slots: a pure function, so it can be tested with a table.

Each function (lane) has a pass: a virtual time that advances by `1/weight` per call it is
given. Free slots go one by one to the lane with the lowest `(pass, seq)`, where `seq` orders
lanes that tie by when they were last served (the least recently served first). A lane's next
pass is `max(base, last + 1/weight)`: `base` is the pass of the call given out most recently,
so a function that was idle cannot have saved up credit and burst past the others when it
comes back (Temporal's fairness keys do the same).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Turn:
    """One lane's place in the fair order (mutated by `allot`)."""

    key: str
    weight: float
    room: int  # calls it could start now: limit minus in flight minus asked for, capped by backlog
    last_pass: float = 0.0
    seq: int = 0


@dataclass
class Allotment:
    counts: dict[str, int]
    base: float
    seq: int
    served: list[int] = field(default_factory=list)  # indices of the turns given slots, in turn


def allot(
    turns: Sequence[Turn],
    free: int,
    base: float,
    seq: int,
    room: Callable[[int], int] | None = None,
) -> Allotment:
    """Give up to `free` slots to lanes in `(pass, seq)` order; each lane at most its room.

    `base` and `seq` are the worker's running virtual time and counter; the result carries
    their new values, and each served `Turn` its new `last_pass` and `seq`. With `room`, a
    turn's room is not read from it but asked for (by its index) when its turn first comes,
    and set on it then: turns never reached are never asked (with many lanes and few free
    slots, most are not), and the result is the same as with every room known up front."""
    heap: list[tuple[float, int, int, Turn]] = []
    for index, turn in enumerate(turns):
        if (room is not None or turn.room > 0) and turn.weight > 0:
            heap.append((_next_pass(turn, base), turn.seq, index, turn))
    heapq.heapify(heap)
    counts: dict[str, int] = {}
    served: list[int] = []
    while free > 0 and heap:
        pass_, _, index, turn = heapq.heappop(heap)
        if turn.key not in counts:  # its first turn in this allotment
            if room is not None:
                turn.room = room(index)
                if turn.room <= 0:
                    continue
            counts[turn.key] = 0
            served.append(index)
        base = max(base, pass_)
        seq += 1
        turn.last_pass, turn.seq = pass_, seq
        turn.room -= 1
        free -= 1
        counts[turn.key] += 1
        if turn.room > 0:
            heapq.heappush(heap, (_next_pass(turn, base), turn.seq, index, turn))
    return Allotment(counts, base, seq, served)


def _next_pass(turn: Turn, base: float) -> float:
    return max(base, turn.last_pass + 1.0 / turn.weight)

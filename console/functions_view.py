"""The Functions page's rows: each function's calls of the last hour by state (the ledger),
what waits for it and what workers hold now (the queue), and its dead letters, with the names
that mean one function (`echo`, `echo.openfaas-fn`) counted as one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from asyncq.backlog import QueueBacklog

DEFAULT_NAMESPACE_SUFFIX = ".openfaas-fn"
MAX_ROWS = 1_000


def canonical(name: str) -> str:
    """`echo.openfaas-fn` is `echo`: the gateway routes both to one function."""
    return name.removesuffix(DEFAULT_NAMESPACE_SUFFIX) if name != DEFAULT_NAMESPACE_SUFFIX else name


@dataclass
class FunctionRow:
    name: str
    counts: dict[str, int] = field(default_factory=dict)  # ledger states (and "429")
    stored: int = 0  # calls on its subject in the queue
    in_flight: int = 0  # of those, held by workers
    dead: int = 0
    paused: bool = False  # paused by hand (`ferry functions pause`)


def function_rows(
    known: Iterable[str],
    per_function: Mapping[str, Mapping[str, int]],
    backlog: QueueBacklog | None,
    dead_letter_functions: Iterable[str],
    paused: Iterable[str] = (),
) -> list[FunctionRow]:
    rows: dict[str, FunctionRow] = {}

    def row(name: str) -> FunctionRow:
        key = canonical(name)
        return rows.setdefault(key, FunctionRow(key))

    for name in known:
        row(name)
    for name, counts in per_function.items():
        target = row(name).counts
        for state, count in counts.items():
            target[state] = target.get(state, 0) + count
    for waiting in backlog.functions if backlog is not None else ():
        found = row(waiting.function)
        found.stored += waiting.stored
        found.in_flight += max(0, waiting.in_flight)
    for name in dead_letter_functions:
        row(name).dead += 1
    for name in paused:
        row(name).paused = True
    return sorted(rows.values(), key=lambda r: (-r.stored, r.name))[:MAX_ROWS]

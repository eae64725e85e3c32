"""What the last hour looked like, worked out from the ledger's entries: pure functions, so the
overview's figures and its chart are tested without NATS."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ledger.entries import CallEntry, CallState

HOUR = 3600.0
BIN_SECONDS = 300.0  # twelve five-minute bars
SERIES = ("accepted", "succeeded", "failed", "retried", "dead_lettered")


def seconds_of(text: str | None) -> float | None:
    """An entry's RFC 3339 time as Unix seconds, or None if it has none or it is not one."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass
class Activity:
    """Counts per five-minute bin over the last hour, oldest bin first, plus what waits now."""

    start: float
    bins: dict[str, list[int]] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    per_function: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, series: str) -> int:
        return sum(self.bins.get(series, ()))


def summarise(
    entries: Iterable[CallEntry], dead_times: Sequence[float] = (), now: float | None = None
) -> Activity:
    """Bin each entry by when it was accepted (`queued_at`) and when it ended (`finished_at`);
    `retried` counts calls that needed more than one attempt, by their last change. Calls that
    have not ended are counted as waiting by state, per function too."""
    now = time.time() if now is None else now
    start = now - HOUR
    count = int(HOUR // BIN_SECONDS)
    activity = Activity(start, {name: [0] * count for name in SERIES})

    def add(series: str, at: float | None) -> None:
        if at is not None and start <= at <= now:
            activity.bins[series][min(count - 1, int((at - start) // BIN_SECONDS))] += 1

    for entry in entries:
        add("accepted", seconds_of(entry.queued_at))
        if entry.state is CallState.SUCCEEDED:
            add("succeeded", seconds_of(entry.finished_at))
        elif entry.state is CallState.FAILED:
            add("failed", seconds_of(entry.finished_at))
        if entry.attempts > 1:
            add("retried", seconds_of(entry.updated_at))
        row = activity.per_function.setdefault(entry.function, {})
        row[entry.state.value] = row.get(entry.state.value, 0) + 1
        if entry.status == 429:
            row["429"] = row.get("429", 0) + 1
        if not entry.state.final:
            activity.waiting[entry.state.value] = activity.waiting.get(entry.state.value, 0) + 1
    for at in dead_times:
        add("dead_lettered", at)
    return activity


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    series: str


def chart_bars(activity: Activity, width: float = 600.0, height: float = 120.0) -> list[Bar]:
    """Grouped bars for an inline SVG: one group per bin, one bar per series, scaled to the
    largest count (so a quiet hour still shows its shape)."""
    series = [s for s in SERIES if s in activity.bins]
    bins = len(activity.bins[series[0]]) if series else 0
    top = max((max(activity.bins[s], default=0) for s in series), default=0) or 1
    group = width / max(1, bins)
    bar = group * 0.8 / max(1, len(series))
    bars = []
    for i in range(bins):
        for j, name in enumerate(series):
            value = activity.bins[name][i]
            tall = height * value / top
            bars.append(Bar(i * group + j * bar, height - tall, bar, tall, value, name))
    return bars

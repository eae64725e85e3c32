"""Per-function gauges of fair mode, read from the lanes when Prometheus scrapes.

Cardinality is bounded twice: only functions with a lane (calls waiting or running, at most
`fair.MAX_LANES`) appear, and only the `PER_FUNCTION` with the largest backlog by name; the
rest are summed under `function_name="other"`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from queue_worker.lanes import Lane
from queue_worker.sorter import Sorter

PER_FUNCTION = 50
OTHER = "other"


def _name(lane: Lane) -> str:
    return lane.function or lane.subject.rsplit(".", 1)[-1]


class FairCollector(Collector):
    def __init__(
        self,
        registry: CollectorRegistry,
        lanes: Callable[[], Iterable[Lane]],
        sorter: Sorter | None = None,
    ) -> None:
        self.lanes = lanes
        self.sorter = sorter
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "queue_worker_pending_messages",
            "Calls waiting per function (stored on its subject or held here from the plain "
            "subject; not yet running here)",
            labels=["function_name"],
        )
        inflight = GaugeMetricFamily(
            "queue_worker_function_inflight",
            "Calls of each function running in this worker",
            labels=["function_name"],
        )
        limit = GaugeMetricFamily(
            "queue_worker_function_limit",
            "Calls of each function this worker may run at once now (adaptive limit and cap)",
            labels=["function_name"],
        )
        throttled = CounterMetricFamily(
            "queue_worker_function_throttled",
            "Answers of 429 (or 503 with Retry-After) per function, since its lane was made",
            labels=["function_name"],
        )
        breaker = GaugeMetricFamily(
            "queue_worker_function_breaker_state",
            "Circuit breaker per function: 0 closed, 1 half-open (one probe), 2 open (calls wait)",
            labels=["function_name"],
        )
        paused = GaugeMetricFamily(
            "queue_worker_function_paused",
            "1 while a function is paused by hand (ferry functions pause): its calls wait",
            labels=["function_name"],
        )
        lanes = sorted(self.lanes(), key=lambda lane: lane.pending, reverse=True)
        rest = [0, 0, 0, 0]
        for index, lane in enumerate(lanes):
            values = (lane.pending, lane.inflight, lane.allowed, lane.throttled)
            if index < PER_FUNCTION:
                name = _name(lane)
                pending.add_metric([name], values[0])
                inflight.add_metric([name], values[1])
                limit.add_metric([name], values[2])
                throttled.add_metric([name], values[3])
                if lane.breaker is not None:
                    breaker.add_metric([name], int(lane.breaker.state))
                paused.add_metric([name], int(lane.paused))
            else:
                rest = [a + b for a, b in zip(rest, values, strict=True)]
        if len(lanes) > PER_FUNCTION:
            pending.add_metric([OTHER], rest[0])
            inflight.add_metric([OTHER], rest[1])
            limit.add_metric([OTHER], rest[2])
            throttled.add_metric([OTHER], rest[3])
        yield from (pending, inflight, limit, throttled, breaker, paused)
        if self.sorter is not None:
            yield from _sorter_metrics(self.sorter)


def _sorter_metrics(sorter: Sorter) -> Iterator[Metric]:
    ahead = sorter.sort_ahead
    figures: list[tuple[type[CounterMetricFamily | GaugeMetricFamily], str, str, float]] = [
        (
            CounterMetricFamily,
            "queue_worker_sorter_moved",
            "Calls moved from the queue's plain subject to their function's subject",
            sorter.moved_total,
        ),
        (
            CounterMetricFamily,
            "queue_worker_sorter_failures",
            "Moves handed back to the plain subject (the copy was refused or not answered); "
            "each is tried again: a count that keeps growing means calls go round without running",
            sorter.failed_total,
        ),
        (
            GaugeMetricFamily,
            "queue_worker_sorter_moving",
            "Calls being moved now (delivered, not yet stored again)",
            sorter.moving,
        ),
    ]
    if ahead is not None:
        figures += [
            (
                CounterMetricFamily,
                "queue_worker_sorter_held",
                "Calls from the plain subject held by their function's lane instead of moved "
                "(each then ran here, or was moved or handed back)",
                ahead.held_total,
            ),
            (
                CounterMetricFamily,
                "queue_worker_sorter_held_too_long",
                "Held calls moved because they waited longer than a second (their function had "
                "more work than it could run soon)",
                ahead.aged_total,
            ),
            (
                GaugeMetricFamily,
                "queue_worker_sorter_holding",
                "Calls from the plain subject held now, not yet started",
                ahead.count,
            ),
        ]
    for kind, name, text, value in figures:
        family = kind(name, text)
        family.add_metric([], value)
        yield family

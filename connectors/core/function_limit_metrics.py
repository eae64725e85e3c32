"""Per-function gauges of a connector's limiter, read from its limits when Prometheus scrapes.

Cardinality is bounded twice: only functions the limiter holds (called recently, at most
`function_limits.REMEMBERED`) appear, and only the `PER_FUNCTION` with the most calls waiting
or running by name; the rest are summed under `function="other"`. The throttled count is a
counter by function (`connector_function_throttled_total`), as bounded as the topic map.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.core.function_limits import FunctionLimits

PER_FUNCTION = 50
OTHER = "other"


class FunctionLimitCollector(Collector):
    def __init__(self, registry: CollectorRegistry, limits: FunctionLimits) -> None:
        self.limits = limits
        registry.register(self)

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def _families(
        self,
    ) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "connector_function_limit",
                "Calls of each function this connector may run at once now (adaptive limit "
                "and ferry.max_inflight)",
                labels=["function"],
            ),
            GaugeMetricFamily(
                "connector_function_inflight",
                "Calls of each function running in this connector",
                labels=["function"],
            ),
            GaugeMetricFamily(
                "connector_function_waiting",
                "Calls of each function waiting for room under its limit (or its breaker)",
                labels=["function"],
            ),
            GaugeMetricFamily(
                "connector_function_breaker_state",
                "Circuit breaker per function: 0 closed, 1 half-open (one probe), 2 open "
                "(its calls wait)",
                labels=["function"],
            ),
        )

    def collect(self) -> Iterator[Metric]:
        self.limits.sweep()  # idle functions go even when no new one comes to make room
        limit, inflight, waiting, breaker = families = self._families()
        held = sorted(
            self.limits, key=lambda item: len(item[1].waiters) + item[1].inflight, reverse=True
        )
        rest = [0, 0, 0]
        for index, (name, entry) in enumerate(held):
            values = (entry.allowed, entry.inflight, len(entry.waiters))
            if index < PER_FUNCTION:
                limit.add_metric([name], values[0])
                inflight.add_metric([name], values[1])
                waiting.add_metric([name], values[2])
                if entry.breaker is not None:
                    breaker.add_metric([name], int(entry.breaker.state))
            else:
                rest = [a + b for a, b in zip(rest, values, strict=True)]
        if len(held) > PER_FUNCTION:
            limit.add_metric([OTHER], rest[0])
            inflight.add_metric([OTHER], rest[1])
            waiting.add_metric([OTHER], rest[2])
        yield from families

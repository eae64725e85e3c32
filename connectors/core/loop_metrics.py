"""Labelled counters and histograms kept as plain numbers, read when Prometheus scrapes.

A `prometheus_client` child takes a lock on every `inc` and `observe`, and finding it takes
another; the per-message metrics of a connector are written several times for every message,
only from the event loop's thread, and the metrics endpoint reads them on that thread too. So
a dict of numbers does, at a fraction of the cost. The exposition is the same as the client
library's, without the `_created` series.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


class _LoopMetric:
    """A metric's name, help and label names; `describe` (which the registry reads to refuse
    a name already taken) yields its empty family."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)

    def family(self) -> Metric:
        """The empty family, to which `collect` adds the series."""
        raise NotImplementedError

    def _check(self, values: tuple[str, ...]) -> None:
        """A new label set must fit (checked once per set): a wrong one would break every
        scrape of `/metrics`, so it fails where it is counted instead."""
        if len(values) != len(self.labels) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{self.name} takes {len(self.labels)} text label values: {values!r}")

    def describe(self) -> Iterator[Metric]:
        yield self.family()


class LoopCounter(_LoopMetric):
    """A counter by label values (`name` without `_total`: the exposition adds it)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        documentation: str,
        labels: Sequence[str],
        known: Iterable[tuple[str, ...]] = (),
    ) -> None:
        super().__init__(name, documentation, labels)
        self.counts: dict[tuple[str, ...], int] = dict.fromkeys(known, 0)  # shown from 0
        registry.register(self)

    def inc(self, *values: str) -> None:
        counts = self.counts
        count = counts.get(values)
        if count is None:
            self._check(values)
            count = 0
        counts[values] = count + 1

    def add(self, amount: int, *values: str) -> None:
        """`inc` `amount` times at once (a sheet of calls)."""
        counts = self.counts
        count = counts.get(values)
        if count is None:
            self._check(values)
            count = 0
        counts[values] = count + amount

    def value(self, *values: str) -> int:
        return self.counts.get(values, 0)

    def family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labels)

    def collect(self) -> Iterator[Metric]:
        family = self.family()
        for values, count in list(self.counts.items()):
            family.add_metric(values, count)
        yield family


class _Series:
    __slots__ = ("buckets", "total")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size  # not cumulative: an observation counts in its own bucket
        self.total = 0.0


class LoopHistogram(_LoopMetric):
    """A histogram by label values, with fixed bucket bounds (`+Inf` added)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        documentation: str,
        labels: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("histogram buckets must be distinct and in increasing order")
        super().__init__(name, documentation, labels)
        self.bounds = tuple(float(b) for b in buckets)
        self._le = [*(floatToGoString(b) for b in self.bounds), "+Inf"]  # type: ignore[no-untyped-call]
        self.series: dict[tuple[str, ...], _Series] = {}
        if not self.labels:  # shown from the start, as the client library shows it
            self.series[()] = _Series(len(self._le))
        registry.register(self)

    def observe(self, amount: float, *values: str) -> None:
        series = self.series.get(values)
        if series is None:
            self._check(values)
            series = self.series[values] = _Series(len(self._le))
        series.buckets[bisect_left(self.bounds, amount)] += 1  # le: bound >= amount
        series.total += amount

    def count(self, *values: str) -> int:
        series = self.series.get(values)
        return sum(series.buckets) if series is not None else 0

    def family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labels)

    def collect(self) -> Iterator[Metric]:
        family = self.family()
        for values, series in list(self.series.items()):
            cumulative, running = [], 0
            for le, count in zip(self._le, series.buckets, strict=True):
                running += count
                cumulative.append((le, running))
            family.add_metric(list(values), cumulative, series.total)
        yield family

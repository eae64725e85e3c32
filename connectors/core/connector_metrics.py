"""Metrics every connector exports (names shared by Kafka, SQS and cron)."""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)
CHILDREN_REMEMBERED = 10_000  # label sets kept per metric; past it, the cache starts over

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class LabelledChildren(Generic[M]):
    """A labelled metric's children, remembered by their label values.

    `labels(...)` takes a lock and builds its key on every call; the same few topics and
    functions come with every message, so a dict lookup stands in for it on the hot path.
    Never used for a metric whose children are removed (`lag`): a removed child would live
    on here, counting where nobody reads."""

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            if len(self._children) >= CHILDREN_REMEMBERED:
                self._children.clear()
            child = self._children[values] = self.metric.labels(*values)
        return child


class ConnectorMetrics:
    def __init__(self, registry: CollectorRegistry, max_inflight: int) -> None:
        self.received = Counter(
            "connector_messages_received_total",
            "Events received, by topic",
            ["topic"],
            registry=registry,
        )
        self.invocations = Counter(
            "connector_invocations_total",
            "Final invocation outcomes, by function and the function's last status",
            ["function", "status"],
            registry=registry,
        )
        self.retries = Counter(
            "connector_retries_total",
            "Attempts that will be retried",
            ["function"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "connector_dead_letters_total",
            "Events given up on after their attempts, by function and destination",
            ["function", "destination"],
            registry=registry,
        )
        self.unmatched = Counter(
            "connector_unmatched_messages_total",
            "Events no function subscribes to",
            ["topic"],
            registry=registry,
        )
        self.duration = Histogram(
            "connector_invocation_duration_seconds",
            "Duration of each invocation attempt",
            ["function"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.inflight = Gauge(
            "connector_invocation_inflight", "Invocations running now", registry=registry
        )
        self.max_inflight = Gauge(
            "connector_max_inflight", "Configured max_inflight", registry=registry
        )
        self.max_inflight.set(max_inflight)
        self.topic_map_size = Gauge(
            "connector_topic_map_size",
            "Topic subscriptions in the current topic map",
            registry=registry,
        )
        self.topic_map_skipped = Gauge(
            "connector_topic_map_skipped_entries",
            "Gateway function entries (and namespaces) left out of the current topic map as "
            "malformed",
            registry=registry,
        )
        self.topic_map_failures = Counter(
            "connector_topic_map_rebuild_failures_total",
            "Failed topic-map rebuilds",
            registry=registry,
        )
        self.received_by = LabelledChildren(self.received)
        self.invocations_by = LabelledChildren(self.invocations)
        self.retries_by = LabelledChildren(self.retries)
        self.unmatched_by = LabelledChildren(self.unmatched)
        self.duration_by = LabelledChildren(self.duration)
        self.lag = Gauge(
            "connector_consumer_lag",
            "Events waiting at the source, where it knows",
            ["source"],
            registry=registry,
        )

"""Metrics every connector exports (names shared by Kafka, SQS and cron)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from connectors.core.loop_metrics import LoopCounter, LoopHistogram

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ConnectorMetrics:
    def __init__(self, registry: CollectorRegistry, max_inflight: int) -> None:
        self.received = LoopCounter(
            registry,
            "connector_messages_received",
            "Events received, by topic",
            ["topic"],
        )
        self.invocations = LoopCounter(
            registry,
            "connector_invocations",
            "Final invocation outcomes, by function and the function's last status",
            ["function", "status"],
        )
        self.retries = LoopCounter(
            registry,
            "connector_retries",
            "Attempts that will be retried",
            ["function"],
        )
        self.throttled = LoopCounter(
            registry,
            "connector_function_throttled",
            "Answers of 429 (or 503 with Retry-After) per function",
            ["function"],
        )
        self.dead_letters = Counter(
            "connector_dead_letters_total",
            "Events given up on after their attempts, by function and destination",
            ["function", "destination"],
            registry=registry,
        )
        self.expired = LoopCounter(
            registry,
            "connector_events_expired",
            "Events not delivered because they were older than max_event_age, by topic",
            ["topic"],
        )
        self.unmatched = LoopCounter(
            registry,
            "connector_unmatched_messages",
            "Events no function subscribes to",
            ["topic"],
        )
        self.duration = LoopHistogram(
            registry,
            "connector_invocation_duration_seconds",
            "Duration of each invocation attempt",
            ["function"],
            DURATION_BUCKETS,
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
        self.lag = Gauge(
            "connector_consumer_lag",
            "Events waiting at the source, where it knows",
            ["source"],
            registry=registry,
        )

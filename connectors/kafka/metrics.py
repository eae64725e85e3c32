"""Metrics only the Kafka connector has, beside the shared `connector_*` ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class KafkaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.commits = Counter(
            "kafka_connector_commits_total", "Offset commits accepted", registry=registry
        )
        self.commit_failures = Counter(
            "kafka_connector_commit_failures_total",
            "Offset commits that failed (retried at the next interval)",
            registry=registry,
        )
        self.rebalances = Counter(
            "kafka_connector_partitions_revoked_total",
            "Partitions taken away by a rebalance",
            registry=registry,
        )
        self.revoke_cancelled = Counter(
            "kafka_connector_revoke_cancelled_total",
            "Lanes still running at the end of revoke_timeout (left uncommitted)",
            registry=registry,
        )
        self.offset_restarts = Counter(
            "kafka_connector_offset_restarts_total",
            "Times a partition's offsets went back (topic deleted and created again, or the "
            "position reset) and its bookkeeping started over",
            registry=registry,
        )
        self.record_errors = Counter(
            "kafka_connector_record_errors_total",
            "Unexpected errors processing a record (each a failed attempt of the record)",
            registry=registry,
        )
        self.stalled = Gauge(
            "kafka_connector_stalled_partitions",
            "Partitions waiting on a record that failed unexpectedly (/readyz answers 503)",
            registry=registry,
        )
        self.assigned = Gauge(
            "kafka_connector_assigned_partitions",
            "Partitions this process owns now",
            registry=registry,
        )
        self.uncommitted = Gauge(
            "kafka_connector_uncommitted_records",
            "Records fetched and not yet committable",
            registry=registry,
        )
        self.paused = Gauge(
            "kafka_connector_paused_partitions",
            "Partitions paused because max_uncommitted records are held",
            registry=registry,
        )
        self.responses_dropped = Counter(
            "kafka_connector_responses_dropped_total",
            "Responses not published to response_topic (queue full or broker error)",
            registry=registry,
        )

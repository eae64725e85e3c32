"""Metrics only the SQS connector has (the shared ones are `connector_*`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class SqsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.receive_errors = Counter(
            "sqs_receive_errors_total",
            "Failed or throttled receives (each followed by a back-off)",
            ["queue"],
            registry=registry,
        )
        self.deleted = Counter(
            "sqs_messages_deleted_total",
            "Messages deleted after their outcome",
            ["queue"],
            registry=registry,
        )
        self.visibility_extensions = Counter(
            "sqs_visibility_extensions_total",
            "Visibility heartbeats sent while a call ran",
            ["queue"],
            registry=registry,
        )
        self.handed_back = Counter(
            "sqs_messages_handed_back_total",
            "Messages made visible again unprocessed (drain, FIFO order kept)",
            ["queue"],
            registry=registry,
        )

"""The queue worker's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from connectors.core.connector_metrics import DURATION_BUCKETS
from connectors.core.loop_metrics import LoopCounter, LoopHistogram


class QueueWorkerMetrics:
    """The per-message ones (processed, retries, callbacks, duration) are plain numbers read
    when Prometheus scrapes (`loop_metrics`): a client-library child takes a lock each time."""

    def __init__(
        self, registry: CollectorRegistry, max_inflight: int, *, per_function: bool = False
    ) -> None:
        self.processed = LoopCounter(
            registry,
            "queue_worker_messages_processed",
            "Messages with a final outcome, by function and the function's last status",
            ["function", "status"],
        )
        self.inflight = Gauge(
            "queue_worker_function_invocation_inflight",
            "Invocations running now",
            registry=registry,
        )
        self.finishing = Gauge(
            "queue_worker_messages_finishing",
            "Messages whose invocation ended and whose outcome (dead letter, callback, ack) "
            "is still being recorded",
            registry=registry,
        )
        self.held_bytes = Gauge(
            "queue_worker_held_answer_bytes",
            "Bytes of the answers of those messages, held until their outcome is recorded "
            "(bounded by max_held_answer_bytes)",
            registry=registry,
        )
        self.prefetched = Gauge(
            "queue_worker_messages_prefetched",
            "Messages delivered ahead of a free slot, waiting for one",
            registry=registry,
        )
        self.max_inflight = Gauge(
            "queue_worker_max_inflight", "Configured max_inflight", registry=registry
        )
        self.max_inflight.set(max_inflight)
        # Fair mode reads the backlog per function from its lanes (`fair_metrics`); static
        # mode has one series, function_name="" (its one consumer does not know functions).
        self.pending: Gauge | None = None
        if not per_function:
            self.pending = Gauge(
                "queue_worker_pending_messages",
                "Messages waiting in this worker's consumer (not yet delivered)",
                ["function_name"],
                registry=registry,
            )
        self.ack_pending = Gauge(
            "queue_worker_ack_pending_messages",
            "Messages delivered and not yet acknowledged, across all replicas",
            registry=registry,
        )
        self.reconnects = Counter(
            "queue_worker_nats_reconnect_total", "Reconnections to NATS", registry=registry
        )
        self.retries = LoopCounter(
            registry,
            "queue_worker_retries",
            "Attempts handed back to JetStream for a later retry",
            ["function"],
        )
        self.dead_letters = Counter(
            "queue_worker_dead_letters_total",
            "Messages moved to the dead-letter stream, by reason",
            ["function", "reason"],
            registry=registry,
        )
        self.callbacks = LoopCounter(
            registry,
            "queue_worker_callbacks",
            "Callbacks by outcome (delivered, rejected, failed, refused)",
            ["outcome"],
        )
        self.duration = LoopHistogram(
            registry,
            "queue_worker_invocation_duration_seconds",
            "Duration of each invocation attempt",
            ["function"],
            DURATION_BUCKETS,
        )

"""The gateway's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from connectors.core.loop_metrics import LoopCounter, LoopHistogram

PUBLISH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.async_calls = LoopCounter(
            registry,
            "gateway_async_calls",
            "POST /async-function answers by outcome "
            "(accepted, scheduled, duplicate, not_found, bad_name, bad_callback, bad_call_id, "
            "bad_timing, too_large, unavailable)",
            ["outcome"],
            known=[("accepted",), ("duplicate",)],  # shown from 0, for rate() and alerts
        )
        self.publish_duration = LoopHistogram(
            registry,
            "gateway_publish_duration_seconds",
            "Time until JetStream confirmed a queued call",
            [],
            PUBLISH_BUCKETS,
        )
        self.proxied = LoopCounter(  # a dict of numbers: one count per proxied call
            registry,
            "gateway_proxied_requests",
            "Requests forwarded to the upstream gateway or a standalone function, by status",
            ["status"],
        )
        self.publishes_waiting = Gauge(
            "gateway_publishes_waiting",
            "Queued calls sent to JetStream whose answer has not come yet (a JetStream that "
            "stops answering shows here before the publish timeout turns them into 503s)",
            registry=registry,
        )
        self.functions = Gauge(
            "gateway_functions", "Functions in the current function list", registry=registry
        )
        self.refresh_failures = Counter(
            "gateway_function_list_refresh_failures_total",
            "Function list refreshes that failed (the last good list was kept)",
            registry=registry,
        )

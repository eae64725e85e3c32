"""Metrics only the cron connector has (the shared ones are `connector_*`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DELAY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class CronMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.fired = Counter(
            "cron_slots_fired_total", "Slots this replica invoked", ["function"], registry=registry
        )
        self.skipped = Counter(
            "cron_slots_skipped_total",
            "Slots not invoked here, by reason (forbid, missed, claimed_elsewhere, claim_error, "
            "shutdown)",
            ["function", "reason"],
            registry=registry,
        )
        self.invalid = Counter(
            "cron_invalid_schedules_total",
            "Functions whose schedule or time zone could not be used",
            ["function"],
            registry=registry,
        )
        self.jobs = Gauge("cron_schedules", "Schedules being followed", registry=registry)
        self.delay = Histogram(
            "cron_fire_delay_seconds",
            "From the scheduled instant to the start of the invocation",
            buckets=DELAY_BUCKETS,
            registry=registry,
        )

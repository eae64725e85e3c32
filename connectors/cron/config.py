"""Everything `ferry cron-connector` reads from its environment, in one typed object."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.core.config import GatewaySettings, RetrySettings, RuntimeSettings
from connectors.core.connector_config import ConnectorSettings
from connectors.core.settings import choice, duration, group, setting
from connectors.cron.schedule import load_zone
from connectors.jetstream.settings import OptionalNatsSettings

CRON_TOPIC = "cron-function"
SCHEDULE_ANNOTATION = "schedule"
TIMEZONE_ANNOTATION = "schedule_timezone"


def zone_name(text: str) -> str:
    load_zone(text)
    return text.strip()


@dataclass(frozen=True)
class CronSettings:
    cron_kv_bucket: str = setting(
        "cron_kv_bucket",
        "ferry-cron",
        "JetStream key-value bucket holding slot claims and busy leases (with nats_url)",
    )
    concurrency_policy: str = setting(
        "concurrency_policy",
        "forbid",
        "a slot while the function's previous sync call runs: forbid (skip) or allow",
        choice("allow", "forbid"),
    )
    starting_deadline: float = setting(
        "starting_deadline",
        0.0,
        "fire the latest missed slot if it is at most this late (0s: never)",
        duration,
        shown="0s",
    )
    default_timezone: str = setting(
        "default_timezone",
        "UTC",
        f"IANA time zone of schedules without a {TIMEZONE_ANNOTATION} annotation",
        zone_name,
    )


@dataclass(frozen=True)
class CronConnectorConfig:
    nats: OptionalNatsSettings = group(OptionalNatsSettings)
    cron: CronSettings = group(CronSettings)
    connector: ConnectorSettings = group(ConnectorSettings)
    gateway: GatewaySettings = group(GatewaySettings)
    retry: RetrySettings = group(RetrySettings)
    runtime: RuntimeSettings = group(RuntimeSettings)

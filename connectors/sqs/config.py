"""Everything `ferry sqs-connector` reads from its environment, in one typed object."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from connectors.core.config import GatewaySettings, RetrySettings, RuntimeSettings
from connectors.core.connector_config import ConnectorSettings
from connectors.core.settings import (
    connect_or_interval,
    csv,
    duration,
    group,
    http_url_or_empty,
    int_in,
    setting,
)

MAX_VISIBILITY_SECONDS = 12 * 3600  # SQS refuses a longer visibility timeout


def whole_seconds(low: int, high: int) -> Callable[[str], int]:
    """A duration rounded up to whole seconds (SQS counts visibility and waits in seconds)."""

    def parse(text: str) -> int:
        seconds = math.ceil(duration(text))
        if not low <= seconds <= high:
            raise ValueError(f"must be between {low}s and {high}s")
        return seconds

    return parse


def queue_urls(text: str) -> tuple[str, ...]:
    urls = csv(text)
    for url in urls:
        http_url_or_empty(url)
        if not url.rstrip("/").rsplit("/", 1)[-1]:
            raise ValueError(f"{url!r} does not end with a queue name")
    return tuple(u.rstrip("/") for u in urls)


@dataclass(frozen=True)
class SqsSettings:
    # read by botocore itself (credentials, profiles, web identity), not by `load_settings`
    library_env: ClassVar[tuple[str, ...]] = (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_EC2_METADATA_DISABLED",
    )
    queue_url: tuple[str, ...] = setting(
        "queue_url", (), "queue URLs to consume, comma separated (required)", queue_urls
    )
    visibility_timeout: int = setting(
        "visibility_timeout",
        30,
        "how long a received message stays hidden; extended while a call runs",
        whole_seconds(1, MAX_VISIBILITY_SECONDS),
        shown="30s",
    )
    wait_time: int = setting(
        "wait_time",
        20,
        "long-poll wait of one receive (0s to 20s)",
        whole_seconds(0, 20),
        shown="20s",
    )
    max_messages: int = setting("max_messages", 10, "messages per receive (1 to 10)", int_in(1, 10))
    endpoint_url: str = setting(
        "endpoint_url",
        "",
        "SQS endpoint (for SQS-compatible servers; empty: AWS)",
        http_url_or_empty,
    )
    aws_region: str = setting(
        "AWS_REGION",
        "",
        "AWS region (empty: from the queue URL, else the AWS configuration)",
        aliases=("AWS_DEFAULT_REGION",),
    )
    dead_letter_queue_url: str = setting(
        "dead_letter_queue_url",
        "",
        "where failed messages go when their queue has no redrive policy (empty: kept)",
        http_url_or_empty,
    )
    sqs_connect_timeout: float = setting(
        "sqs_connect_timeout",
        5.0,
        "bound on reaching SQS at start-up and on each connection",
        connect_or_interval,
        shown="5s",
    )


@dataclass(frozen=True)
class SqsConnectorConfig:
    sqs: SqsSettings = group(SqsSettings)
    connector: ConnectorSettings = group(ConnectorSettings)
    gateway: GatewaySettings = group(GatewaySettings)
    retry: RetrySettings = group(RetrySettings)
    runtime: RuntimeSettings = group(RuntimeSettings)

    def __post_init__(self) -> None:
        if not self.sqs.queue_url:
            raise ValueError("queue_url is required: the SQS queue URL(s) to consume")

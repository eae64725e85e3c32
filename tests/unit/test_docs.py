"""The docs name every environment variable each process reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.core.settings import env_names
from connectors.cron.config import CronConnectorConfig
from connectors.kafka.config import KafkaConnectorConfig
from connectors.sqs.config import SqsConnectorConfig
from gateway.config import GatewayConfig
from queue_worker.config import QueueWorkerConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"

PROCESSES = [
    ("queue-worker.md", QueueWorkerConfig),
    ("gateway.md", GatewayConfig),
    ("kafka-connector.md", KafkaConnectorConfig),
    ("sqs-connector.md", SqsConnectorConfig),
    ("cron-connector.md", CronConnectorConfig),
]


@pytest.mark.parametrize(("page", "config"), PROCESSES, ids=[p for p, _ in PROCESSES])
def test_every_variable_is_documented(page: str, config: type) -> None:
    text = (DOCS / page).read_text()
    missing = sorted(name for name in env_names(config) if f"`{name}`" not in text)
    assert missing == []

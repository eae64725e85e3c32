"""`ferry kafka-connector`: the Kafka event connector as a process."""

from __future__ import annotations

import argparse

from connectors.core.runner import run_from_env
from connectors.core.settings import describe_settings
from connectors.kafka.config import KafkaConnectorConfig

HELP = (
    "Consume Kafka topics and invoke every function whose `topic` annotation names the\n"
    "record's topic, with retries. An offset is committed only once that record and every\n"
    "earlier one of its partition has a final outcome (success or dead-lettered).\n"
    "Configured by environment variables (OpenFaaS names)."
)
EPILOG = describe_settings(KafkaConnectorConfig)


def configure(parser: argparse.ArgumentParser) -> None:
    """The connector takes no options: everything is an environment variable."""


def run(args: argparse.Namespace) -> int:
    from connectors.kafka.connector import KafkaConnector

    return run_from_env(KafkaConnectorConfig, KafkaConnector, lambda c: c.runtime)

"""`ferry cron-connector`: invoke functions on their cron schedules."""

from __future__ import annotations

import argparse

from connectors.core import tracing
from connectors.core.openfaas_settings import describe_unread
from connectors.core.runner import run_from_env
from connectors.core.settings import describe_settings
from connectors.cron.config import CronConnectorConfig

HELP = (
    "Invoke every function annotated `topic: cron-function` on its `schedule` annotation\n"
    "(five-field cron or @hourly-style descriptors, several separated by `;`), in the time zone\n"
    "of its `schedule_timezone` annotation (IANA name; default_timezone otherwise). Each call\n"
    "carries X-Call-Id `{function}:{unix_ms}`; with nats_url, replicas claim each slot in\n"
    "JetStream so it fires once."
)
EPILOG = "\n\n".join(
    (describe_settings(CronConnectorConfig), describe_unread(CronConnectorConfig), tracing.HELP)
)


def configure(parser: argparse.ArgumentParser) -> None:
    """The connector takes no options: everything is an environment variable."""


def run(args: argparse.Namespace) -> int:
    from connectors.cron.connector import CronConnector

    return run_from_env(CronConnectorConfig, CronConnector, lambda c: c.runtime)

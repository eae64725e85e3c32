"""`ferry sqs-connector`: invoke functions for the messages of SQS queues."""

from __future__ import annotations

import argparse

from connectors.core import tracing
from connectors.core.openfaas_settings import describe_unread
from connectors.core.runner import run_from_env
from connectors.core.settings import describe_settings
from connectors.sqs.config import SqsConnectorConfig

HELP = (
    "Long-poll SQS queues (queue_url) and invoke every function whose `topic` annotation names\n"
    "the queue, with X-SQS-* headers. A message is deleted only after every matched function\n"
    "has a final outcome; retries go through the message's visibility, and a message that\n"
    "fails for good goes to the queue's redrive policy or to dead_letter_queue_url.\n"
    "AWS credentials come from the standard variables (AWS_ACCESS_KEY_ID,\n"
    "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, ...) or an instance role."
)
EPILOG = "\n\n".join(
    (describe_settings(SqsConnectorConfig), describe_unread(SqsConnectorConfig), tracing.HELP)
)


def configure(parser: argparse.ArgumentParser) -> None:
    """The connector takes no options: everything is an environment variable."""


def run(args: argparse.Namespace) -> int:
    from connectors.sqs.connector import SqsConnector

    return run_from_env(SqsConnectorConfig, SqsConnector, lambda c: c.runtime)

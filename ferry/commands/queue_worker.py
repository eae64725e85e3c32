"""`ferry queue-worker`: the JetStream async worker as a process."""

from __future__ import annotations

import argparse

from connectors.core import tracing
from connectors.core.openfaas_settings import describe_unread
from connectors.core.runner import run_from_env
from connectors.core.settings import describe_settings
from queue_worker.config import QueueWorkerConfig

HELP = (
    "Consume async invocations (OpenFaaS QueueRequest messages) from NATS JetStream, invoke\n"
    "each function through the gateway with retries, and POST results to X-Callback-Url.\n"
    "Configured by environment variables (OpenFaaS names)."
)
EPILOG = "\n\n".join(
    (describe_settings(QueueWorkerConfig), describe_unread(QueueWorkerConfig), tracing.HELP)
)


def configure(parser: argparse.ArgumentParser) -> None:
    """The queue worker takes no options: everything is an environment variable."""


def run(args: argparse.Namespace) -> int:
    from queue_worker.worker import QueueWorker

    return run_from_env(QueueWorkerConfig, QueueWorker, lambda c: c.runtime)

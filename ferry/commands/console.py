"""`ferry console`: the web console on its own port, for installs that keep OpenFaaS's gateway."""

from __future__ import annotations

import argparse

from connectors.core.openfaas_settings import describe_unread
from connectors.core.runner import run_from_env
from connectors.core.settings import describe_settings
from console.config import ConsoleConfig

HELP = (
    "Serve the web console (calls, queues, dead letters, schedules; cancel, replay, purge) at\n"
    "/system/console/ on its own port. Needs NATS; reads the function list from gateway_url.\n"
    "Asks for the gateway's basic-auth credentials (basic_auth=true); without them it starts\n"
    "only with console_enabled=true. Configured by environment variables."
)
EPILOG = describe_settings(ConsoleConfig) + "\n\n" + describe_unread(ConsoleConfig)


def configure(parser: argparse.ArgumentParser) -> None:
    """The console takes no options: everything is an environment variable."""


def run(args: argparse.Namespace) -> int:
    from console.service import ConsoleService

    return run_from_env(ConsoleConfig, ConsoleService, lambda c: c.runtime)

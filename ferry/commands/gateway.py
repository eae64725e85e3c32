"""`ferry gateway`: the durable async front door."""

from __future__ import annotations

import argparse

from connectors.core.openfaas_settings import describe_unread
from connectors.core.runner import run_from_env
from connectors.core.settings import describe_settings
from gateway.config import GatewayConfig

HELP = (
    "Accept POST /async-function/{name}[/{path}], store each call on NATS JetStream as an\n"
    "OpenFaaS QueueRequest and answer 202 with X-Call-Id only once it is stored (503 if NATS\n"
    "cannot confirm it; 400 for an X-Call-Id over 128 characters or not letters, digits and\n"
    "- . _ ~ : @ + =). Everything else is proxied to upstream_url (proxy mode) or served from\n"
    "functions_file (standalone mode: /system/functions, /system/namespaces, /system/info,\n"
    "/function/{name}; 501 for deploy, scale, secrets, logs). With basic_auth=true the call\n"
    "routes (and in standalone mode every /system route) need the secret_mount_path credentials.\n"
    "Configured by environment variables; set exactly one of upstream_url and functions_file."
)
EPILOG = describe_settings(GatewayConfig) + "\n\n" + describe_unread(GatewayConfig)


def configure(parser: argparse.ArgumentParser) -> None:
    """The gateway takes no options: everything is an environment variable."""


def run(args: argparse.Namespace) -> int:
    from ferry.console_mount import mount_console
    from gateway.service import GatewayService

    def build(config: GatewayConfig) -> GatewayService:
        service = GatewayService(config)
        mount_console(service)
        return service

    return run_from_env(GatewayConfig, build, lambda c: c.runtime)

"""Serving the web console on `ferry gateway`'s port: the shell wires the two together, since
the front door and the console never import each other."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiohttp import web
from nats.js import JetStreamContext

from connectors.core.function_entries import FunctionInfo
from connectors.core.gateway import read_basic_auth
from console.app import PREFIX, console_app
from console.config import console_allowed
from console.data import ConsoleData
from gateway.service import GatewayService
from ledger.bucket import bucket_handle

log = logging.getLogger("ferry.console")


def mount_console(service: GatewayService) -> bool:
    """Add the console to the gateway if its settings allow it; say which in the log."""
    config = service.config
    if not console_allowed(config.console_enabled, config.basic_auth):
        # debug, not info: a start-up that fails must stay one line on stderr
        log.debug("web console off: it is served with basic_auth=true or console_enabled=true")
        return False
    authorization = read_basic_auth(config.secret_mount_path) if config.basic_auth else None
    if authorization is None:
        log.warning(
            "web console at %s has no credentials (console_enabled=true, basic_auth=false): "
            "anyone who reaches port %d can cancel calls and replay or purge dead letters",
            PREFIX,
            config.port,
        )

    async def functions() -> Sequence[FunctionInfo]:
        return [
            FunctionInfo(f.name, f.namespace, f.annotations, f.labels)
            for f in service.catalog.current.functions
        ]

    def make(js: JetStreamContext) -> tuple[str, web.Application]:
        ledger = config.ledger
        data = ConsoleData(
            js,
            stream=config.nats.nats_stream,
            dead_letter_stream=config.nats.dead_letter_stream,
            ledger=bucket_handle(js, ledger.call_ledger_bucket) if ledger.call_ledger else None,
            ledger_bucket=ledger.call_ledger_bucket,
            functions=functions,
            body_bucket=config.nats.large_body_bucket,
            function_state_bucket=config.nats.function_state_bucket,
            replicas=config.nats.nats_stream_replicas,
            delayed_stream=config.nats.delayed_stream,
        )
        return PREFIX.rstrip("/"), console_app(data, authorization=authorization)

    service.mounts.append(make)
    return True

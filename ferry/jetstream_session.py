"""A short-lived JetStream connection for the shell commands (`publish`, `dead-letters`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.js import JetStreamContext

from connectors.core.logs import ConsoleFormatter
from connectors.jetstream.connect import connect
from queue_worker import jetstream
from queue_worker.config import QueueNatsSettings


def quiet_logging() -> None:
    """Shell commands speak through their output and one error line, not connection logs."""
    handler = logging.StreamHandler()
    handler.setFormatter(ConsoleFormatter("ferry: %(message)s"))  # control characters escaped
    logging.basicConfig(level=logging.ERROR, handlers=[handler])


@asynccontextmanager
async def open_jetstream(settings: QueueNatsSettings) -> AsyncIterator[JetStreamContext]:
    """Connect (StartupError if NATS is unreachable, ConfigError for a bad secret file), make
    sure the streams exist with the configured replicas, yield."""
    connection = await connect(settings, name="ferry-cli")
    try:
        js = connection.client.jetstream()
        await jetstream.ensure_streams(
            js,
            settings.nats_stream,
            settings.dead_letter_stream,
            replicas=settings.nats_stream_replicas,
        )
        yield js
    finally:
        await connection.close()

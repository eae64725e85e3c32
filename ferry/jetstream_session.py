"""A short-lived JetStream connection for the shell commands (`publish`, `dead-letters`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats.errors
from nats.js import JetStreamContext

from connectors.core.logs import ConsoleFormatter
from queue_worker import jetstream
from queue_worker.config import NatsSettings


def quiet_logging() -> None:
    """Shell commands speak through their output and one error line, not connection logs."""
    handler = logging.StreamHandler()
    handler.setFormatter(ConsoleFormatter("ferry: %(message)s"))  # control characters escaped
    logging.basicConfig(level=logging.ERROR, handlers=[handler])


@asynccontextmanager
async def open_jetstream(settings: NatsSettings) -> AsyncIterator[JetStreamContext]:
    """Connect (StartupError if NATS is unreachable), make sure the streams exist, yield."""
    nc = await jetstream.connect(
        settings.nats_url,
        name="ferry-cli",
        connect_timeout=settings.nats_connect_timeout,
    )
    try:
        js = nc.jetstream()
        await jetstream.ensure_streams(js, settings.nats_stream, settings.dead_letter_stream)
        yield js
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await nc.flush(timeout=2)
        await nc.close()

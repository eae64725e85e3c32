"""A short-lived JetStream connection for the shell commands (`publish`, `dead-letters`,
`calls`), and the one way they turn its errors into an error line and an exit status.

The shell owns it because both halves are about being a one-shot command: a connection named
`ferry-cli` that lives as long as one action, and the mapping of errors to exit statuses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from nats.js import JetStreamContext

from asyncq import jetstream
from asyncq.settings import QueueNatsSettings
from connectors.core.errors import ConfigError, FerryError, StartupError
from connectors.core.logs import ConsoleFormatter
from connectors.core.runner import EXIT_CRASH, fail
from connectors.jetstream.connect import connect


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
            delayed=settings.delayed_stream,
        )
        yield js
    finally:
        await connection.close()


def run_action(action: Coroutine[Any, Any, int]) -> int:
    """Run a command's work to its exit status: bad settings or NATS out of reach is one line
    and exit 2, any other failure ferry diagnosed one line and exit 1 (`fail` escapes control
    characters, as everything from input may hold them)."""
    try:
        return asyncio.run(action)
    except (StartupError, ConfigError) as exc:
        return fail(str(exc))
    except FerryError as exc:
        return fail(str(exc), EXIT_CRASH)

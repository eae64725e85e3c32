"""The NATS/JetStream edge: connect, declare streams and consumers, publish.

nats-py exceptions stop here; callers see `StartupError` or `PublishError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError, NotFoundError

from connectors.core.errors import FerryError, StartupError
from queue_worker.layout import DEAD_LETTER_STREAM

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]


class PublishError(FerryError):
    """JetStream did not confirm that a message was stored."""


class NeverStorable(PublishError):
    """The message is larger than the server ever takes (`max_payload`): retrying cannot help."""


async def connect(
    url: str,
    *,
    name: str,
    connect_timeout: float,
    on_disconnect: Callback | None = None,
    on_reconnect: Callback | None = None,
) -> Client:
    """Connect once (bounded by `connect_timeout`), then reconnect forever with back-off."""

    last_error: list[str] = []

    async def error_cb(exc: Exception) -> None:
        # before the first connection the error goes into the one start-up line instead
        if not connected:
            last_error[:] = [_describe(exc)]
        else:
            log.warning("NATS: %s", _describe(exc))

    connected = False

    options: dict[str, Any] = {
        "servers": [url],
        "name": name,
        "connect_timeout": max(1, int(connect_timeout)),
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "error_cb": error_cb,
    }
    if on_disconnect is not None:
        options["disconnected_cb"] = on_disconnect
    if on_reconnect is not None:
        options["reconnected_cb"] = on_reconnect
    try:
        # nats-py keeps retrying the first connection when reconnects are unbounded
        client = await asyncio.wait_for(nats.connect(**options), connect_timeout)
    except (NatsError, OSError, TimeoutError) as exc:
        reason = last_error[0] if last_error else _describe(exc)
        raise StartupError(
            f"nats_url={url}: cannot connect to NATS within {connect_timeout:g}s: {reason}"
        ) from None
    connected = True
    return client


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or exc.__class__.__name__


async def ensure_stream(js: JetStreamContext, config: js_api.StreamConfig) -> None:
    """Create the stream if it is missing; safe when several replicas race to do it."""
    assert config.name is not None
    try:
        await js.stream_info(config.name)
        return
    except NotFoundError:
        pass
    try:
        await js.add_stream(config)
        log.info("created stream %s (subjects %s)", config.name, ", ".join(config.subjects or []))
    except BadRequestError as exc:
        if "already in use" not in str(exc.description or ""):
            raise StartupError(f"cannot create stream {config.name}: {exc.description}") from None


def request_stream_config(stream: str) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=stream,
        subjects=[stream, f"{stream}.*"],
        retention=js_api.RetentionPolicy.WORK_QUEUE,
        storage=js_api.StorageType.FILE,
        duplicate_window=120.0,
    )


def dead_letter_stream_config(stream: str = DEAD_LETTER_STREAM) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=stream,
        subjects=[f"{stream}.>"],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        duplicate_window=120.0,
    )


async def ensure_streams(js: JetStreamContext, stream: str, dead_letter_stream: str) -> None:
    try:
        await ensure_stream(js, request_stream_config(stream))
        await ensure_stream(js, dead_letter_stream_config(dead_letter_stream))
    except (NatsError, TimeoutError) as exc:
        raise StartupError(f"JetStream is not available: {_describe(exc)}") from None


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    subject: str,
    *,
    ack_wait: float,
) -> None:
    """Create or update the durable pull consumer.

    Create-or-update is idempotent, so many replicas may start at once, and a changed
    `ack_wait` takes effect on the next start. `max_ack_pending` is unlimited: each worker
    bounds what it holds by its own slots.
    """
    config = js_api.ConsumerConfig(
        durable_name=durable,
        filter_subject=subject,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=-1,
        max_waiting=512,
    )
    try:
        try:
            await js.add_consumer(stream, config)
        except BadRequestError as exc:
            log.warning("keeping consumer %s as it is: %s", durable, exc.description)
    except (NatsError, TimeoutError) as exc:
        reason = _describe(exc)
        raise StartupError(f"cannot create consumer {durable} on {stream}: {reason}") from None


async def publish(
    js: JetStreamContext,
    subject: str,
    data: bytes,
    *,
    headers: dict[str, str] | None = None,
    stream: str | None = None,
    timeout: float = 5.0,
) -> js_api.PubAck:
    """Publish and wait for JetStream's acknowledgement that the message is stored."""
    try:
        return await js.publish(subject, data, timeout=timeout, stream=stream, headers=headers)
    except MaxPayloadError:
        raise NeverStorable(
            f"the message for {subject} ({len(data)} bytes) is larger than NATS's max_payload"
        ) from None
    except (NatsError, TimeoutError, OSError) as exc:
        raise PublishError(
            f"JetStream did not store the message on {subject}: {_describe(exc)}"
        ) from None

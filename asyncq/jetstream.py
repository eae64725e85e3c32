"""The queue's JetStream edge: its streams and publishing.

Connecting and creating streams with the configured replicas is `connectors.jetstream`'s job;
this module says which streams and consumers the queue needs. nats-py exceptions stop here;
callers see `StartupError` or `PublishError`.
"""

from __future__ import annotations

import logging

from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from asyncq.layout import DEAD_LETTER_STREAM
from asyncq.schedule import enable_schedules, schedule_subjects
from connectors.core.errors import FerryError, StartupError
from connectors.jetstream.connect import describe
from connectors.jetstream.setup import ensure_stream

log = logging.getLogger("queue_worker.jetstream")


class PublishError(FerryError):
    """JetStream did not confirm that a message was stored."""


class NeverStorable(PublishError):
    """The message is larger than the server ever takes (`max_payload`): retrying cannot help."""


def request_stream_config(stream: str) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=stream,
        subjects=[stream, f"{stream}.*", schedule_subjects(stream)],
        retention=js_api.RetentionPolicy.WORK_QUEUE,
        storage=js_api.StorageType.FILE,
        duplicate_window=120.0,
        allow_msg_schedules=True,  # delayed calls (`asyncq.schedule`); ignored before 2.12
    )


def dead_letter_stream_config(stream: str = DEAD_LETTER_STREAM) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=stream,
        subjects=[f"{stream}.>"],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        duplicate_window=120.0,
    )


async def ensure_streams(
    js: JetStreamContext,
    stream: str,
    dead_letter_stream: str,
    *,
    replicas: int = 1,
    subject: str = "",
) -> str:
    """The request and dead-letter streams; returns the name of the stream that serves the
    queue's `subject` (`stream` itself unless another stream already holds it).

    A stream that already holds the subject is served whatever its name, and left as it is
    (OpenFaaS Pro names its stream after the queue with an `OF_` prefix: `OF_faas-request`
    holding subject `faas-request`); ferry's own streams are created with `replicas` and kept
    at it (see connectors.jetstream).
    """
    subject = subject or stream
    holder = await stream_holding(js, subject)
    if holder is not None and holder != stream:
        log.info("serving stream %s, which already holds subject %s", holder, subject)
    else:
        await ensure_stream(js, request_stream_config(stream), replicas)
        await enable_schedules(js, stream)  # delayed calls, where the server can
        holder = stream
    await ensure_stream(js, dead_letter_stream_config(dead_letter_stream), replicas)
    return holder


async def stream_holding(js: JetStreamContext, subject: str) -> str | None:
    """The stream whose subjects take `subject` (JetStream's stream-names-by-subject
    request), or None if no stream does."""
    try:
        return await js.find_stream_name_by_subject(subject)
    except NotFoundError:
        return None
    except (NatsError, TimeoutError) as exc:
        raise StartupError(
            f"JetStream is not available (asking which stream holds {subject}): {describe(exc)}"
        ) from None


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
            f"JetStream did not store the message on {subject}: {describe(exc)}"
        ) from None

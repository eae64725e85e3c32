"""The queue's JetStream edge: its streams and publishing.

Connecting and creating streams with the configured replicas is `connectors.jetstream`'s job;
this module says which streams and consumers the queue needs. nats-py exceptions stop here;
callers see `StartupError` or `PublishError`.
"""

from __future__ import annotations

import dataclasses
import logging

from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError, NoRespondersError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from asyncq.delayed import delayed_stream_name, ensure_delayed_stream
from asyncq.layout import DEAD_LETTER_STREAM, function_subjects
from asyncq.schedule import enable_schedules, holds_schedules, schedule_subjects
from connectors.core.errors import FerryError
from connectors.jetstream.connect import describe
from connectors.jetstream.setup import ensure_stream, patiently, unavailable

log = logging.getLogger("queue_worker.jetstream")


class PublishError(FerryError):
    """JetStream did not confirm that a message was stored."""


class NoStream(PublishError):
    """No stream holds the subject (e.g. a static worker removed the per-function subjects)."""


class BacklogUnreadable(FerryError):
    """JetStream did not say how many messages wait on a stream's subjects."""


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
    delayed: str = "",
) -> str:
    """The request and dead-letter streams; returns the name of the stream that serves the
    queue's `subject` (`stream` itself unless another stream already holds it).

    A stream that already holds the subject is served whatever its name, and left as it is
    (OpenFaaS Pro names its stream after the queue with an `OF_` prefix: `OF_faas-request`
    holding subject `faas-request`); ferry's own streams are created with `replicas` and kept
    at it (see connectors.jetstream). If the serving stream has no message schedules, the
    stream of waiting calls (`delayed`, default `{stream}-delayed`) is made too.
    """
    subject = subject or stream
    holder = await patiently(f"the stream holding {subject}", lambda: stream_holding(js, subject))
    if holder is not None and holder != stream:
        log.info("serving stream %s, which already holds subject %s", holder, subject)
        scheduled = await holds_schedules(js, holder, stream)
    else:
        await ensure_stream(js, request_stream_config(stream), replicas)
        # delayed calls, where the server can
        scheduled = await patiently(f"stream {stream}", lambda: enable_schedules(js, stream))
        holder = stream
    if not scheduled:
        await ensure_delayed_stream(js, delayed_stream_name(stream, delayed), replicas)
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
        raise unavailable(
            exc,
            f"JetStream is not available (asking which stream holds {subject}): {describe(exc)}",
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
    except NoRespondersError:
        raise NoStream(f"no stream holds {subject}") from None
    except MaxPayloadError:
        raise NeverStorable(
            f"the message for {subject} ({len(data)} bytes) is larger than NATS's max_payload"
        ) from None
    except (NatsError, TimeoutError, OSError) as exc:
        raise PublishError(
            f"JetStream did not store the message on {subject}: {describe(exc)}"
        ) from None


async def add_function_subjects(js: JetStreamContext, stream: str, subjects: str) -> bool:
    """Let the request stream hold per-function subjects (fair mode); True if it was changed.

    A stream made before fair mode, or by OpenFaaS, holds only the plain subjects; adding one
    subject keeps every stored message. Safe when several workers race to do it. `subjects`
    is the queue's subject base (`nats_stream`), `stream` the stream that holds them."""
    wanted = function_subjects(subjects)
    return await patiently(f"stream {stream}", lambda: _add_function_subjects(js, stream, wanted))


async def _add_function_subjects(js: JetStreamContext, stream: str, wanted: str) -> bool:
    try:
        info = await js.stream_info(stream)
        held = list(info.config.subjects or [])
        if wanted in held:
            return False
        await js.update_stream(dataclasses.replace(info.config, subjects=[*held, wanted]))
    except (NatsError, TimeoutError) as exc:
        raise unavailable(
            exc,
            f"cannot add the per-function subjects {wanted} to stream {stream}: {describe(exc)}",
        ) from None
    log.info("stream %s now holds per-function subjects %s", stream, wanted)
    return True


async def holds_function_subjects(js: JetStreamContext, stream: str, subjects: str) -> bool:
    """Whether publishers should write calls to per-function subjects (a fair worker made the
    stream hold them)."""
    try:
        info = await js.stream_info(stream)
    except (NatsError, TimeoutError):
        return False
    return function_subjects(subjects) in (info.config.subjects or [])


async def subject_counts(js: JetStreamContext, stream: str, subjects: str) -> dict[str, int]:
    """Messages stored per subject matching `subjects` (one stream-info request)."""
    try:
        info = await js.stream_info(stream, subjects_filter=subjects)
    except (NatsError, TimeoutError) as exc:
        raise BacklogUnreadable(f"cannot read the backlog of {stream}: {describe(exc)}") from None
    return dict(info.state.subjects or {})

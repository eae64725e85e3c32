"""Delayed calls where NATS cannot schedule them: ferry's own stream of waiting calls.

A request stream without message schedules (a server before 2.12, or a stream ferry serves as
it is, like OpenFaaS Pro's `OF_faas-request`) cannot hold a delayed call. The publisher then
stores it on a stream ferry owns, `{nats_stream}-delayed` (`delayed_stream`), under a subject
of its own (`{delayed}.call.{call}`, so a cancel can purge it), with the headers it would have
had on the request stream plus `Ferry-Delay-Target`, the subject it goes to when due. Every
queue worker runs a waker (`queue_worker.delay_waker`) that moves due calls to their target and
hands the others back to JetStream with a delay: nothing waits in a worker's memory, and no
worker slot or worker consumer's ack-pending place is taken. File storage and work-queue
retention, so a waiting call outlives restarts of NATS and of every worker.
"""

from __future__ import annotations

import logging

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from asyncq import codec
from asyncq.layout import subject_token
from connectors.core.errors import DecodeError, FerryError
from connectors.jetstream.connect import describe
from connectors.jetstream.setup import ensure_stream

log = logging.getLogger("ferry.delayed")

DELAY_TARGET = "Ferry-Delay-Target"
CALL_TOKEN = "call"
# Bounds of the waiting-calls stream: when it is full a new delayed call is refused (503,
# nothing lost), never an old one dropped. 1 GiB holds 100,000 calls of up to ~10 KiB; a
# larger body goes to the object store (a claim check) and costs the stream its reference only.
MAX_WAITING_CALLS = 100_000
MAX_WAITING_BYTES = 1024**3


def delayed_stream_name(nats_stream: str, configured: str = "") -> str:
    """The stream of waiting calls: `delayed_stream` if set, else `{nats_stream}-delayed`."""
    return configured or f"{nats_stream}-delayed"


def delayed_subjects(delayed: str) -> str:
    return f"{delayed}.{CALL_TOKEN}.*"


def delayed_subject(delayed: str, call_id: str) -> str:
    """Where one call waits: one subject per call (a cancel purges it)."""
    return f"{delayed}.{CALL_TOKEN}.{subject_token(call_id)}"


def delayed_stream_config(delayed: str) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=delayed,
        subjects=[delayed_subjects(delayed)],
        retention=js_api.RetentionPolicy.WORK_QUEUE,
        storage=js_api.StorageType.FILE,
        discard=js_api.DiscardPolicy.NEW,
        max_msgs=MAX_WAITING_CALLS,
        max_bytes=MAX_WAITING_BYTES,
        duplicate_window=120.0,
    )


async def ensure_delayed_stream(js: JetStreamContext, delayed: str, replicas: int = 1) -> None:
    await ensure_stream(js, delayed_stream_config(delayed), replicas)


async def has_delayed_stream(js: JetStreamContext, delayed: str) -> bool:
    try:
        await js.stream_info(delayed)
    except NotFoundError:
        return False
    return True


async def unschedule_waiting(js: JetStreamContext, delayed: str, call_id: str) -> str | None:
    """Remove a call waiting on the delayed stream: the function it was for, or None if it
    was not waiting there (fired already, never delayed, or no such stream)."""
    return await remove_waiting(js, delayed, delayed_subject(delayed, call_id), call_id)


async def remove_waiting(
    js: JetStreamContext, stream: str, subject: str, call_id: str
) -> str | None:
    """Purge the one message waiting on `subject` of `stream` (a delayed call, as a schedule or
    on the delayed stream): the function it was for ("" if unreadable), or None if none waits."""
    try:
        waiting = await js.get_last_msg(stream, subject)
        await js.purge_stream(stream, subject=subject)
    except NotFoundError:
        return None
    except (NatsError, TimeoutError) as exc:
        raise FerryError(f"cannot remove the delayed call {call_id}: {describe(exc)}") from None
    try:
        return codec.decode(waiting.data or b"").function
    except DecodeError:
        return ""


async def waiting_on_stream(js: JetStreamContext, delayed: str) -> int:
    """Calls waiting on the delayed stream (0 if there is none)."""
    try:
        info = await js.stream_info(delayed)
    except NotFoundError:
        return 0
    return info.state.messages or 0

"""Delayed calls kept by NATS itself: message schedules (ADR-51, nats-server 2.12+).

A delayed call is stored on the request stream under its own schedule subject,
`{stream}.delayed.{call}`, with `Nats-Schedule: @at <time>` and `Nats-Schedule-Target: <the
subject the call would have gone to at once>`. No consumer reads the schedule subjects: the
server holds the message (file storage, so it outlives restarts of NATS and of every worker)
and at its time publishes a copy, headers and all, to the target, then removes the schedule.
Until then the call takes no worker slot and no ack-pending place. Cancelling a delayed call
purges its schedule subject.

A server or stream without schedules (older than 2.12, or a stream ferry could not update,
like OpenFaaS Pro's `OF_faas-request`) gets its delayed calls kept on ferry's own stream of
waiting calls instead (`asyncq.delayed`), never in a worker's memory.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api

from asyncq.delayed import (
    delayed_stream_name,
    remove_waiting,
    unschedule_waiting,
    waiting_on_stream,
)
from asyncq.layout import subject_token
from connectors.core.errors import FerryError
from connectors.jetstream.connect import describe
from connectors.jetstream.setup import JetStreamLate, is_late

log = logging.getLogger("ferry.schedule")

DELAYED_TOKEN = "delayed"
SCHEDULE = "Nats-Schedule"
SCHEDULE_TARGET = "Nats-Schedule-Target"
COUNTING_DURABLE = "ferry-delayed-calls"  # never pulled: its pending count is the waiting calls
RECHECK_SECONDS = 30.0  # a stream without schedules is looked at again after this long


class SchedulesUnavailable(FerryError):
    """The stream cannot hold a delayed call (the server has no message schedules), or
    whether it can could not be read."""


def schedule_subjects(stream: str) -> str:
    """The stream subject holding every delayed call; three tokens or more, so it never
    matches the plain subjects (`{stream}`, `{stream}.*`) that workers consume."""
    return f"{stream}.{DELAYED_TOKEN}.>"


def schedule_subject(stream: str, call_id: str) -> str:
    """Where one delayed call waits: a subject of its own, since a schedule is one per subject."""
    return f"{stream}.{DELAYED_TOKEN}.{subject_token(call_id)}"


def at_text(seconds: float) -> str:
    """`@at` and an RFC 3339 UTC time with milliseconds, as `Nats-Schedule` takes it."""
    when = datetime.fromtimestamp(seconds, UTC)
    return "@at " + when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def schedule_headers(target: str, not_before: float) -> dict[str, str]:
    return {SCHEDULE: at_text(not_before), SCHEDULE_TARGET: target}


async def enable_schedules(js: JetStreamContext, stream: str) -> bool:
    """Let the request stream hold delayed calls (schedules on, the delayed subjects added);
    True if it can. Idempotent; several processes may race. A server that cannot is logged
    once and delayed calls then wait on ferry's delayed stream; one that does not answer in
    time raises JetStreamLate (start-up asks again)."""
    try:
        info = await js.stream_info(stream)
        config = info.config
        if not _ready(config, stream):
            subjects = list(config.subjects or [])
            if schedule_subjects(stream) not in subjects:
                subjects.append(schedule_subjects(stream))
            wanted = dataclasses.replace(config, allow_msg_schedules=True, subjects=subjects)
            config = (await js.update_stream(wanted)).config
    except (NatsError, TimeoutError) as exc:
        if is_late(exc):
            raise JetStreamLate(f"JetStream is not available: {describe(exc)}") from None
        log.warning(
            "stream %s cannot hold delayed calls (NATS 2.12+ message schedules), so they wait "
            "on ferry's delayed stream: %s",
            stream,
            describe(exc),
        )
        return False
    if not _ready(config, stream):
        log.warning(
            "stream %s cannot hold delayed calls: this NATS server has no message schedules "
            "(2.12+); they wait on ferry's delayed stream",
            stream,
        )
        return False
    return True


async def holds_schedules(js: JetStreamContext, stream: str, subjects: str) -> bool:
    """Whether a stream ferry does not own (and leaves as it is) can hold delayed calls."""
    try:
        info = await js.stream_info(stream)
    except (NatsError, TimeoutError):
        return False
    return _ready(info.config, subjects)


def _ready(config: js_api.StreamConfig, stream: str) -> bool:
    return bool(config.allow_msg_schedules) and schedule_subjects(stream) in (config.subjects or [])


class ScheduleSupport:
    """Whether the stream takes delayed calls, learnt on the first one and kept (a `no` is
    looked at again after `RECHECK_SECONDS`, e.g. after NATS was upgraded). `stream` is the
    stream that holds the queue's subjects, `subjects` their prefix (`nats_stream`)."""

    def __init__(self, js: JetStreamContext, stream: str, subjects: str = "") -> None:
        self.js = js
        self.stream = stream
        self.subjects = subjects or stream
        self._known: bool | None = None
        self._checked = 0.0

    async def check(self) -> None:
        """Raise SchedulesUnavailable unless the stream holds schedules."""
        if self._known:
            return
        now = time.monotonic()
        if self._known is None or now - self._checked > RECHECK_SECONDS:
            self._checked = now
            try:
                info = await self.js.stream_info(self.stream)
            except (NatsError, TimeoutError) as exc:
                raise SchedulesUnavailable(
                    f"cannot read stream {self.stream}: {describe(exc)}"
                ) from None
            self._known = _ready(info.config, self.subjects)
        if not self._known:
            raise SchedulesUnavailable(
                f"stream {self.stream} does not hold delayed calls: that needs message "
                f"schedules (allow_msg_schedules, NATS 2.12+) and the subject "
                f"{schedule_subjects(self.subjects)}"
            )


async def unschedule(
    js: JetStreamContext, stream: str, call_id: str, *, delayed: str = ""
) -> str | None:
    """Remove a delayed call that has not fired yet, whether it waits as a schedule or on the
    delayed stream (`delayed_stream`, default `{stream}-delayed`): the function it was for, or
    None if there was none (fired already, or never delayed)."""
    found = await remove_waiting(js, stream, schedule_subject(stream, call_id), call_id)
    if found is None:
        return await unschedule_waiting(js, delayed_stream_name(stream, delayed), call_id)
    return found


async def waiting_count(js: JetStreamContext, stream: str, subjects: str = "") -> int:
    """Delayed calls not fired yet: the pending count of a consumer of the schedule subjects
    that never takes anything (cheaper than listing the subjects)."""
    info = await js.add_consumer(
        stream,
        js_api.ConsumerConfig(
            durable_name=COUNTING_DURABLE,
            filter_subject=schedule_subjects(subjects or stream),
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL,
        ),
    )
    return info.num_pending or 0


async def all_waiting(js: JetStreamContext, stream: str, subjects: str, delayed: str) -> int:
    """Delayed calls not fired yet: schedules on the request stream (if it holds them) and
    calls on the stream of waiting calls (if there is one)."""
    total = await waiting_on_stream(js, delayed)
    if await holds_schedules(js, stream, subjects):
        total += await waiting_count(js, stream, subjects)
    return total

"""Moves delayed calls from ferry's delayed stream to the request stream when they are due.

Only where the request stream has no message schedules do calls wait there (`asyncq.delayed`);
every worker replica runs a waker on one shared durable consumer, so each waiting call is in
one waker's hands at a time. A call that is due is published to its target subject on the
request stream, then acked; one that is not goes back to JetStream with `nak(delay)` (capped,
so a clock change is noticed within the cap) and is redelivered at its time. The waker never
sleeps holding a message, and a waiting call takes no worker slot and no place in the worker's
consumer; it does take one in the waker's own consumer, whose `max_ack_pending` is therefore
the delayed stream's bound.

At least once: a waker that dies after the publish and before the ack leaves the call to be
redelivered after `WAKER_ACK_WAIT`, and the publish is repeated with the same `Nats-Msg-Id`, so
the request stream stores it once within its duplicate window (2 minutes for ferry's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api

from asyncq import codec
from asyncq.delayed import (
    DELAY_TARGET,
    MAX_WAITING_CALLS,
    delayed_subjects,
    has_delayed_stream,
)
from asyncq.jetstream import NoStream, PublishError, publish
from asyncq.layout import queue_subject
from asyncq.schedule import DELAYED_TOKEN
from asyncq.timing import NOT_BEFORE, header_seconds
from connectors.core.errors import DecodeError

log = logging.getLogger("ferry.delay_waker")

WAKER_DURABLE = "ferry-delay-waker"
# how long the waker may hold a call: a publish (5 s at most) and an ack. It is also how late a
# call can fire when NATS restarts between handing it to the waker and the waker's nak arriving:
# JetStream then redelivers it only after this long.
WAKER_ACK_WAIT = 10.0
WAKER_BATCH = 64  # messages asked for at once: each is handled in well under a millisecond
FETCH_WAIT = 5.0  # how long one pull request stays open; a redelivery comes as it is due
MAX_NAK_DELAY = 900.0  # a call due later is looked at again after this long
RETRY_SECONDS = 1.0  # after NATS failed, or a call could not be moved


class DelayWaker:
    """`delayed` is the stream of waiting calls, `stream` the request stream that serves the
    queue's subjects, `subjects` their prefix (`nats_stream`)."""

    def __init__(self, js: JetStreamContext, delayed: str, stream: str, subjects: str) -> None:
        self.js = js
        self.delayed = delayed
        self.stream = stream
        self.subjects = subjects
        self.fired = 0
        self._sub: JetStreamContext.PullSubscription | None = None

    async def start(self) -> bool:
        """Bind the shared consumer; False (no waker needed) if there is no delayed stream."""
        if not await has_delayed_stream(self.js, self.delayed):
            return False
        await self.js.add_consumer(
            self.delayed,
            js_api.ConsumerConfig(
                durable_name=WAKER_DURABLE,
                filter_subject=delayed_subjects(self.delayed),
                ack_policy=js_api.AckPolicy.EXPLICIT,
                deliver_policy=js_api.DeliverPolicy.ALL,
                ack_wait=WAKER_ACK_WAIT,
                max_ack_pending=MAX_WAITING_CALLS,  # every waiting call is nak'd, so pending
            ),
        )
        self._sub = await self.js.pull_subscribe_bind(WAKER_DURABLE, self.delayed)
        log.info("waking delayed calls from stream %s onto %s", self.delayed, self.stream)
        return True

    async def run(self) -> None:
        assert self._sub is not None
        while True:
            try:
                messages = await self._sub.fetch(WAKER_BATCH, timeout=FETCH_WAIT)
            except TimeoutError:
                continue
            except NatsError as exc:
                log.warning("cannot take delayed calls from %s: %s", self.delayed, exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            await asyncio.gather(*(self.wake(msg) for msg in messages))  # at most a batch

    async def wake(self, msg: Msg, now: float | None = None) -> None:
        """Fire a due call, or hand it back until its time."""
        headers = dict(msg.headers or {})
        not_before = header_seconds(headers, NOT_BEFORE)
        now = time.time() if now is None else now
        try:
            if not_before is not None and not_before > now:
                await msg.nak(delay=min(not_before - now, MAX_NAK_DELAY))
                return
            await self._fire(msg, headers)
            await msg.ack()
            self.fired += 1
        except PublishError as exc:
            log.warning("cannot move a due delayed call to %s, retrying: %s", self.stream, exc)
            await _hand_back(msg)
        except (NatsError, TimeoutError) as exc:
            log.warning("NATS failed on a delayed call, it will come back: %r", exc)

    async def _fire(self, msg: Msg, headers: dict[str, str]) -> None:
        target = headers.pop(DELAY_TARGET, "")
        msg_id = headers.get("Nats-Msg-Id") or f"{self.delayed}-{msg.metadata.sequence.stream}"
        headers["Nats-Msg-Id"] = f"{msg_id}:due"
        if not self._ours(target):
            target = self._queue_subject(msg)
        try:
            await publish(self.js, target, msg.data, headers=headers, stream=self.stream)
        except NoStream:  # e.g. the per-function subjects were removed while it waited
            plain = self._queue_subject(msg)
            await publish(self.js, plain, msg.data, headers=headers, stream=self.stream)

    def _ours(self, target: str) -> bool:
        """A subject of the queue's that workers consume (not a schedule subject)."""
        if target == self.subjects:
            return True
        prefix = f"{self.subjects}."
        return target.startswith(prefix) and not target.startswith(f"{prefix}{DELAYED_TOKEN}.")

    def _queue_subject(self, msg: Msg) -> str:
        """The call's queue subject; the default queue's for a call that cannot be read (a
        worker then dead-letters it, with the reason)."""
        try:
            queue_name = codec.decode(msg.data).queue_name
        except DecodeError:
            queue_name = ""
        return queue_subject(self.subjects, queue_name)


async def _hand_back(msg: Msg) -> None:
    with contextlib.suppress(NatsError, TimeoutError):  # else redelivered after the ack wait
        await msg.nak(delay=RETRY_SECONDS)


async def start_waker(
    js: JetStreamContext, delayed: str, stream: str, subjects: str
) -> asyncio.Task[None] | None:
    """The waker's task if this NATS has a delayed stream, else None."""
    waker = DelayWaker(js, delayed, stream, subjects)
    try:
        if not await waker.start():
            return None
    except (NatsError, TimeoutError) as exc:  # the calls wait for a worker that can
        log.warning("cannot wake delayed calls from %s: %s", delayed, exc)
        return None
    return asyncio.create_task(waker.run(), name="delay-waker")

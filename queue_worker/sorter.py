"""Moves calls from the queue's plain subject to their function's subject (fair mode).

OpenFaaS gateways and Go clients publish every call on `faas-request` (or
`faas-request.NAME`); the sorter takes them from the queue's usual durable consumer and stores
each on its function's subject, where that function's consumer takes it. A move publishes a
copy (same data, same headers) and only once JetStream has stored it acknowledges the
original: a crash in between delivers the original again, and the copy's `Nats-Msg-Id`
(`ferry-moved-{stream sequence}`) makes JetStream drop the second copy, as long as the move is
repeated within the stream's duplicate window (120 s; the original comes back after
`ack_wait`).

Most calls are not moved at all: the sorter first offers each to its function's lane, which
holds it and runs it from the plain subject when the fair order allows; only what the lanes
cannot hold is moved. The sorter asks for only as many calls as the lanes have room for,
unless it is reading on (`sort_ahead` says when).

A redelivered call (its `nak` asked for a retry, or its worker stopped) that is then moved
carries the deliveries it had used as `Ferry-Attempts-Before`, so moving it spends none and
gives none back.

Cost per moved call: decoding it (only a call whose `Function` cannot be read is refused
here; anything else wrong with it is found by the worker that runs it), one publish and one
ack. The copies' answers come to one inbox subscription of the sorter's own, so a move needs
no task, future or parsed PubAck of its own; a copy not answered within `ANSWER_SECONDS` is
handed back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from asyncq import codec
from asyncq.jetstream import PublishError
from asyncq.layout import function_subject
from connectors.core.errors import DecodeError
from queue_worker import decoded
from queue_worker.delivery_numbers import ack_numbers, stream_seq
from queue_worker.lanes import ATTEMPTS_BEFORE, header_count
from queue_worker.outcomes import HAND_BACK_DELAY_SECONDS, hand_back
from queue_worker.puller import Puller
from queue_worker.sort_ahead import HOLD_SECONDS, SortAhead

log = logging.getLogger("ferry.queue_worker.sorter")

MOVES_AT_ONCE = 64
MOVED_ID = "ferry-moved-{seq}"
ANSWER_SECONDS = 5.0  # a copy JetStream has not answered in this time is handed back
STOP_WAIT_SECONDS = 1.0


class _Move:
    __slots__ = ("deadline", "msg", "subject")

    def __init__(self, msg: Msg, subject: str, deadline: float) -> None:
        self.msg = msg
        self.subject = subject
        self.deadline = deadline


class Sorter:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        stream: str,
        subjects: str,
        queue_name: str,
        durable: str,
        moved: Callable[[str], None],
        undecodable: Callable[[Msg, str, str], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        at_once: int = MOVES_AT_ONCE,
        hold: Callable[[Msg, str], bool] | None = None,
        sort_ahead: SortAhead | None = None,
    ) -> None:
        self.nc = nc
        self.stream = stream
        self.subjects = subjects
        self.queue_name = queue_name
        self.moved = moved
        self.undecodable = undecodable
        self.spawn = spawn
        self.at_once = at_once
        self.hold = hold  # offers a call to its lane: True if the lane holds it
        self.sort_ahead = sort_ahead  # what the lanes hold, in all
        self.moving = 0  # delivered and not yet moved, refused or handed back
        self.moved_total = 0  # calls moved to their function's subject
        self.failed_total = 0  # moves handed back (copy refused or unanswered), retried later
        self.puller = Puller(nc, stream, durable, self._deliver)
        self.stopping = False
        self._subjects: dict[str, str] = {}  # function -> its subject (bounded below)
        self.pending = 0  # calls on the plain subject not yet delivered (as last delivered)
        self._last_function = ""
        self._mixed_at = -HOLD_SECONDS  # when a call read was for another function than the last
        self._waiting: collections.deque[_Move] = collections.deque()  # for the next `_send`
        self._sending = False
        self._answers: dict[int, _Move] = {}  # published copies by reply number, oldest first
        self._number = 0
        self._inbox = ""
        self._sub: Subscription | None = None
        self._quiet = asyncio.Event()  # set when no copy waits to be sent or answered

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._answer)
        await self.puller.start()

    async def stop(self) -> None:
        """Stop taking calls; wait (a little) for the answers to copies already sent, then
        hand back the originals still unanswered."""
        self.stopping = True
        await self.puller.stop()
        if self._waiting or self._answers:
            self._quiet.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_WAIT_SECONDS):
                    await self._quiet.wait()
        for move in [*self._waiting, *self._answers.values()]:  # their originals run later
            self.spawn(hand_back(move.msg))
        self._waiting.clear()
        self._answers.clear()
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def ask(self) -> None:
        """Keep pull requests at the server for as many moves as may run at once (and hand
        back the copies JetStream left unanswered)."""
        now = time.monotonic()
        self._expire(now)
        outstanding = self.puller.outstanding
        wanted = self.at_once - self.moving - outstanding
        ahead = self.sort_ahead
        if ahead is not None:
            ahead.look(self.pending, now - self._mixed_at < HOLD_SECONDS, now)
        if ahead is not None and not ahead.reading_on(now):
            room = ahead.room - outstanding  # ask for what the lanes can hold
            if outstanding and room < min(self.at_once, ahead.limit) // 4:
                return  # by quarters: one pull request per few calls, not one per call
            wanted = min(wanted, room)
        if wanted > 0 and self.puller.can_request() and not self.stopping:
            await self.puller.request(wanted)

    def _deliver(self, msg: Msg) -> None:
        if self.stopping:
            self.spawn(hand_back(msg))
            return
        request: codec.QueueRequest | None = None
        try:
            if self.hold is not None and self.sort_ahead is not None and self.sort_ahead.fits(msg):
                with contextlib.suppress(DecodeError):  # decoded once: its handler reuses it
                    request = codec.decode(msg.data)
            function = request.function if request is not None else codec.function_of(msg.data)
        except DecodeError as exc:
            named = exc.function if isinstance(exc, codec.InvalidFunctionName) else ""
            self.moving += 1
            self.spawn(self._refuse(msg, str(exc), named))
            return
        subject = self._subjects.get(function)
        if subject is None:
            subject = function_subject(self.subjects, self.queue_name, function)
            if len(self._subjects) < 4 * MOVES_AT_ONCE:
                self._subjects[function] = subject
        if self.hold is None:
            self.move(msg, subject)
            return
        self.pending = ack_numbers(msg)[2]
        if function != self._last_function:
            if self._last_function:
                self._mixed_at = time.monotonic()
            self._last_function = function
        if request is not None:
            decoded.remember(msg, request)
        if not self.hold(msg, subject):
            self.move(msg, subject)

    def move(self, msg: Msg, subject: str) -> None:
        """Store `msg` on `subject`, then acknowledge it (not awaited)."""
        self.moving += 1
        self._waiting.append(_Move(msg, subject, time.monotonic() + ANSWER_SECONDS))
        if not self._sending:
            self._sending = True
            self.spawn(self._send())

    async def _send(self) -> None:
        """Publish every copy waiting, each with its own reply subject; not awaited."""
        try:
            while self._waiting:
                move = self._waiting.popleft()
                msg = move.msg
                headers = {key: str(value) for key, value in (msg.headers or {}).items()}
                number, delivered, _ = ack_numbers(msg)
                if number is not None:  # without one, no id: a copy twice beats one dropped
                    headers["Nats-Msg-Id"] = MOVED_ID.format(seq=number)
                else:
                    headers.pop("Nats-Msg-Id", None)
                if delivered > 1:  # its deliveries so far count as attempts, as when run
                    before = header_count(msg.headers, ATTEMPTS_BEFORE)
                    headers[ATTEMPTS_BEFORE] = str(before + delivered - 1)
                self._number += 1
                self._answers[self._number] = move
                try:
                    reply = f"{self._inbox}.{self._number}"
                    await self.nc.publish(move.subject, msg.data, reply=reply, headers=headers)
                except NatsError as exc:
                    self._answers.pop(self._number, None)
                    self._failed(move, str(exc))
        finally:
            self._sending = False

    async def _answer(self, reply: Msg) -> None:
        """JetStream's answer to a copy: acknowledge the original once the copy is stored."""
        number = reply.subject.rpartition(".")[2]
        move = self._answers.pop(int(number), None) if number.isdigit() else None
        if move is None:
            return  # handed back already
        status = reply.headers.get("Status") if reply.headers else None
        if status is not None:  # 503: no stream holds the subject
            self._failed(move, f"status {status}")
        elif b'"error"' in reply.data:
            self._failed(move, reply.data.decode(errors="replace")[:200])
        else:
            try:
                await move.msg.ack()
            except NatsError as exc:  # the original comes back after ack_wait; its copy is
                log.warning("could not acknowledge moved message %s: %s", stream_seq(move.msg), exc)
            self.moved_total += 1
            self.moved(move.subject)
            self._done()

    def _expire(self, now: float) -> None:
        while self._answers:
            number, move = next(iter(self._answers.items()))
            if move.deadline > now:
                return
            del self._answers[number]
            self._failed(move, "JetStream did not answer")

    def _failed(self, move: _Move, reason: str) -> None:
        self.failed_total += 1
        log.warning("could not move message %s, handing it back: %s", stream_seq(move.msg), reason)
        self.spawn(hand_back(move.msg, delay=HAND_BACK_DELAY_SECONDS))
        self._done()

    async def _refuse(self, msg: Msg, reason: str, function: str) -> None:
        try:
            await self.undecodable(msg, reason, function)
        except (PublishError, NatsError, TimeoutError) as exc:
            log.warning("could not refuse message %s, handing it back: %s", stream_seq(msg), exc)
            await hand_back(msg, delay=HAND_BACK_DELAY_SECONDS)
        finally:
            self._done()

    def _done(self) -> None:
        self.moving -= 1
        self.puller.poke()
        if not self._waiting and not self._answers:
            self._quiet.set()

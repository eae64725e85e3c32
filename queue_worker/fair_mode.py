"""Fair mode's parts wired together for the worker: the sorter, the scheduler and its loop,
starting a delivered call in its lane, and sending a call back to its lane when the limiter's
probing overloaded its function."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from asyncq.jetstream import BacklogUnreadable, add_function_subjects, publish, subject_counts
from asyncq.layout import queue_functions_filter, queue_subject
from connectors.core.slots import Slots
from connectors.core.supervision import cancel_and_wait, raise_if_ended
from connectors.jetstream.connect import NatsConnection
from queue_worker.config import QueueWorkerConfig
from queue_worker.delivery_numbers import delivered, stream_seq
from queue_worker.expiry import CallClock
from queue_worker.fair import FairScheduler
from queue_worker.handler import MessageHandler, SlotHold
from queue_worker.lanes import ATTEMPTS_BEFORE, PROBE, RETURNS, Lane, header_count
from queue_worker.outcomes import HAND_BACK_DELAY_SECONDS, hand_back
from queue_worker.pauses import PauseFollower
from queue_worker.progress import ProgressKeeper
from queue_worker.sort_ahead import SortAhead
from queue_worker.sorter import Sorter

log = logging.getLogger("ferry.queue_worker")

CHECK_SECONDS = 1.0  # the loop looks again at least this often


class FairMode:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        config: QueueWorkerConfig,
        *,
        stream: str,
        durable: str,
        slots: Slots,
        calls: MessageHandler,
        clock: CallClock,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        undecodable: Callable[[Msg, str, str], Awaitable[None]],
        progress: ProgressKeeper | None = None,
        ahead: int = 0,
    ) -> None:
        self.js = js
        self.config = config
        self.durable = durable
        self.stream = stream  # the stream holding the queue's subjects
        self.subjects = config.nats.nats_stream  # what the queue's subjects start with
        self.calls = calls
        self.handle = calls.handle
        self.clock = clock
        self.spawn = spawn
        # the lanes hold as many calls from the plain subject as a static worker would
        sort_ahead = (
            SortAhead(config.max_inflight + ahead, drain_seconds=config.fair_sort_after)
            if progress is not None
            else None
        )
        self.scheduler = FairScheduler(
            nc,
            js,
            stream=self.stream,
            subjects=self.subjects,
            queue_name=config.queue_name,
            queue_durable=durable,
            slots=slots,
            ack_wait=config.ack_wait,
            inactive_threshold=config.consumer_inactive_threshold,
            adaptive=config.limiter_enabled,
            batch_max=config.consumer_pull_max_messages,
            breaker=config.breaker_settings(),
            start=self.start_in_lane,
            refuse=lambda msg: spawn(hand_back(msg)),
            return_unrun=lambda msg: spawn(self.hold_back(msg, msg.subject)),  # its lane's
            progress=progress,
            ahead=ahead,
            sort_ahead=sort_ahead,
        )
        self.sorter = Sorter(
            nc,
            js,
            stream=self.stream,
            subjects=self.subjects,
            queue_name=config.queue_name,
            durable=durable,
            moved=self.scheduler.moved,
            undecodable=undecodable,
            spawn=spawn,
            hold=self.scheduler.hold if sort_ahead is not None else None,
            sort_ahead=sort_ahead,
        )
        self.scheduler.move = self.sorter.move
        self.sorter.puller.changed = self.scheduler.changed  # one event wakes the loop
        self.pauses = PauseFollower(config, self.scheduler)
        calls.slot_freed = self.scheduler.changed.set  # the next pass gives the slot out
        calls.send_back = self.send_back

    async def start(self) -> None:
        await add_function_subjects(self.js, self.stream, self.subjects)
        await self.pauses.start(self.js)
        await self.scheduler.start()
        await self.sorter.start()
        config = self.config
        log.info(
            "serving %s fairly per function (sorting %s, consumer %s) with max_inflight=%d, "
            "prefetch=%d, limiter %s, breaker %s via %s",
            self.scheduler.filter,
            queue_subject(self.subjects, config.queue_name),
            self.durable,
            config.max_inflight,
            self.scheduler.ahead,
            "on" if config.limiter_enabled else "off",
            f"on ({config.breaker_failures} failures, {config.breaker_open_for:g}s)"
            if config.breaker_enabled
            else "off",
            config.gateway.gateway_url,
        )

    def lanes(self) -> Iterable[Lane]:
        return self.scheduler.lanes.values()

    @property
    def changed(self) -> asyncio.Event:
        return self.scheduler.changed

    async def run(
        self,
        nats: NatsConnection,
        stopping: asyncio.Event,
        may_take: Callable[[], bool],
        helpers: list[asyncio.Task[None]],
    ) -> None:
        """One pass per event that may free a slot or add work (a call ended, a pull request
        was answered, a backlog was read, a call was sorted); `may_take` is False while too
        many results wait on their callbacks."""
        fair, sorter = self.scheduler, self.sorter
        discovery = asyncio.create_task(fair.discover(), name="fair-discovery")
        try:
            while not stopping.is_set():
                raise_if_ended([discovery, *self.pauses.tasks, *helpers])
                fair.changed.clear()
                if nats.connected:
                    try:
                        await sorter.ask()
                        if may_take():
                            await fair.fill(fair.slots.free)
                    except NatsError as exc:
                        log.warning("pull request failed, retrying: %s", exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CHECK_SECONDS):
                        await fair.changed.wait()
        finally:
            await cancel_and_wait(discovery)

    def start_in_lane(self, msg: Msg, lane: Lane) -> None:
        """A message a lane asked for: its slot is already taken (and given back at once if
        the message is a delayed call not due yet)."""
        plain = msg.subject != lane.subject  # held from the plain subject (`sort_ahead`)
        if (early := self.clock.wait(msg)) is not None:
            SlotHold(self.calls, lane, plain=plain).release()
            self.spawn(hand_back(msg, delay=early))
            return
        admitted = lane.admits()
        if not admitted:  # paused, or its breaker opened since it was asked for
            SlotHold(self.calls, lane, plain=plain).release()
            self.spawn(self.hold_back(msg, lane.subject))
            return
        self.spawn(self.handle(msg, lane, admitted == PROBE))

    def stop_taking(self) -> None:
        self.scheduler.puller.stopping = True
        self.scheduler.puller.hand_back_ahead()
        self.scheduler.changed.set()

    @property
    def held_ahead(self) -> int:
        """Messages delivered ahead of a free slot or held from the plain subject, waiting for
        one."""
        return sum(len(lane.ready) + len(lane.unsorted) for lane in self.scheduler.lanes.values())

    def on_reconnect(self) -> None:
        self.sorter.puller.forget_all()
        self.scheduler.puller.forget_requests()

    async def stop(self) -> None:
        await self.pauses.stop()
        for part in (self.sorter, self.scheduler):
            with contextlib.suppress(NatsError, TimeoutError):
                await part.stop()

    async def hold_back(self, msg: Msg, subject: str) -> None:
        """A delivered call whose function is paused or whose breaker is open goes back to its
        lane unrun, without using an attempt (a `nak` would: JetStream's delivery count is the
        attempt number)."""
        before = header_count(msg.headers, ATTEMPTS_BEFORE)
        used = before + delivered(msg) - 1
        try:
            await self.send_back(msg, used, subject, limiter=False)
        except (NatsError, TimeoutError) as exc:
            log.warning("could not return a held-back call, handing it back: %s", exc)
            await hand_back(msg, delay=HAND_BACK_DELAY_SECONDS)

    async def send_back(
        self, msg: Msg, attempts_used: int, subject: str, *, limiter: bool = True
    ) -> None:
        """A call the limiter's probing overloaded goes back to its lane without using an
        attempt: stored again (same subject, data and headers, with the attempts used so far
        and the returns counted in headers), then the delivered copy acknowledged. The copy's
        `Nats-Msg-Id` is fixed by the original's stream sequence, so a repeat after a crash
        between the two steps is dropped by JetStream's duplicate window. `subject` is its
        lane's (a call its lane held from the plain subject goes to its function's)."""
        headers = {key: str(value) for key, value in (msg.headers or {}).items()}
        headers[ATTEMPTS_BEFORE] = str(attempts_used)
        if limiter:  # the breaker's returns are bounded by its probes, not counted
            headers[RETURNS] = str(header_count(msg.headers, RETURNS) + 1)
        headers["Nats-Msg-Id"] = f"ferry-returned-{stream_seq(msg)}"
        await publish(self.js, subject, msg.data, headers=headers, stream=self.stream)
        await msg.ack_sync(timeout=5.0)


async def warn_of_fair_backlog(
    js: JetStreamContext, stream: str, subjects: str, queue_name: str
) -> None:
    """A static worker does not read per-function subjects: say so if calls wait there."""
    with contextlib.suppress(BacklogUnreadable):
        counts = await subject_counts(js, stream, queue_functions_filter(subjects, queue_name))
        if waiting := sum(counts.values()):
            log.warning(
                "%d calls wait on per-function subjects (%s), which scaling_mode=static does not "
                "serve: run a fair worker until they are done (docs/queue-worker.md)",
                waiting,
                queue_functions_filter(subjects, queue_name),
            )

"""Fair mode: one lane and one JetStream consumer per function with calls waiting, free slots
handed out in the fair order, and only as many messages asked for as can start at once.

Calls wait on per-function subjects (`asyncq.layout.function_subject`), put there by the
publishers or by the worker's sorter. Every `DISCOVERY_SECONDS` one stream-info request reads
how many messages each of the queue's function subjects holds; a function with a backlog gets
a lane and a durable consumer (shared by the replicas, removed by the server once idle for
`consumer_inactive_threshold`). Each pass over the free slots gives them to lanes in
`(pass, seq)` order (`fair_order`), each at most what its limit allows, and has each chosen
lane send one `no_wait` pull request for exactly its share (`lane_puller`, where all lanes
share one inbox subscription): the slots are reserved until the messages arrive or the server
says there are none.

A lane whose function flows also keeps a few messages delivered ahead of a free slot (`ahead`
in all, the worker's `prefetch`; at most a quarter of its limit each), so a slot that frees
starts its next call without a pull round trip. They take no slot, are held in progress like
running calls, and start only when the fair order gives their lane a slot; a lane that is
paused or held back by its breaker keeps none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api

from asyncq.jetstream import BacklogUnreadable, subject_counts
from asyncq.layout import function_durable, queue_functions_filter
from connectors.core.breaker import BreakerSettings, Change
from connectors.core.slots import Slots
from connectors.jetstream.connect import describe
from queue_worker.fair_order import allot
from queue_worker.lane_puller import LISTEN_SECONDS, REQUEST_FORGET_SECONDS, LanePuller
from queue_worker.lanes import Lane
from queue_worker.progress import ProgressKeeper
from queue_worker.sort_ahead import SortAhead

log = logging.getLogger("ferry.queue_worker.fair")

DISCOVERY_SECONDS = 0.25  # how often the backlog per function is read
MAX_LANES = 1000  # functions served at once; more wait until lanes go idle
AHEAD_SHARE = 4  # a lane holds at most one message ahead for every 4 calls it may run


class FairScheduler:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        stream: str,
        subjects: str,
        queue_name: str,
        queue_durable: str,
        slots: Slots,
        ack_wait: float,
        inactive_threshold: float,
        adaptive: bool,
        batch_max: int,
        breaker: BreakerSettings | None,
        start: Callable[[Msg, Lane], None],
        refuse: Callable[[Msg], None],
        return_unrun: Callable[[Msg], None] | None = None,
        progress: ProgressKeeper | None = None,
        ahead: int = 0,
        sort_ahead: SortAhead | None = None,
    ) -> None:
        self.js = js
        self.stream = stream
        self.queue_durable = queue_durable
        self.filter = queue_functions_filter(subjects, queue_name)
        self.slots = slots
        self.ack_wait = ack_wait
        self.inactive_threshold = inactive_threshold
        self.adaptive = adaptive
        self.batch_max = batch_max
        self.breaker = breaker
        self.paused: frozenset[str] = frozenset()  # subjects of the functions paused by hand
        self.breaker_report: Callable[[str, Change], None] | None = None  # see breaker_reports
        self.return_unrun = return_unrun or refuse  # hand a message back without using an attempt
        self.ahead = ahead if progress is not None else 0  # messages held ahead, at most
        self.progress = progress
        self.sort_ahead = sort_ahead if progress is not None else None
        self.move: Callable[[Msg, str], None] | None = None  # the sorter's: store on a subject
        self.changed = asyncio.Event()
        self.lanes: dict[str, Lane] = {}
        self.puller = LanePuller(
            nc,
            stream=stream,
            lanes=self.lanes,
            slots=slots,
            changed=self.changed,
            start=start,
            refuse=refuse,
            progress=progress,
            sort_ahead=self.sort_ahead,
        )
        self._lane_count = 0
        self._base = 0.0
        self._seq = 0
        self._crowded_logged = False

    async def start(self) -> None:
        await self.puller.start()

    async def stop(self) -> None:
        await self.puller.stop()

    # -- lanes --------------------------------------------------------------------------------

    def lane(self, subject: str) -> Lane | None:
        """The lane of `subject`, made if missing (None when `MAX_LANES` are in use)."""
        lane = self.lanes.get(subject)
        if lane is not None:
            return lane
        if len(self.lanes) >= MAX_LANES:
            if not self._crowded_logged:
                log.warning("%d functions have lanes; others wait until some go idle", MAX_LANES)
                self._crowded_logged = True
            return None
        self._lane_count += 1
        inbox = f"{self.puller.inbox_prefix}.{self._lane_count}"  # + `.{request number}`
        lane = Lane(
            subject=subject,
            durable=function_durable(self.queue_durable, subject),
            inbox=inbox,
            slots=self.slots.size,
            adaptive=self.adaptive,
            breaker_defaults=self.breaker,
            paused=subject in self.paused,
            report=self.breaker_report,
        )
        lane.turn.last_pass = self._base
        self.lanes[subject] = lane
        self.puller.by_inbox[inbox] = lane
        return lane

    def pause(self, subjects: frozenset[str]) -> None:
        """The functions paused by hand are now these (by subject): lanes follow at once."""
        self.paused = subjects
        for lane in self.lanes.values():
            lane.paused = lane.subject in subjects
        self.changed.set()

    def hold(self, msg: Msg, subject: str) -> bool:
        """A call from the plain subject: its lane holds it (True) if it may (`sort_ahead`),
        else the sorter moves it to `subject`."""
        ahead = self.sort_ahead
        if ahead is None or self.puller.stopping:
            return False
        now = time.monotonic()
        if not ahead.fits(msg):
            return False
        lane = self.lane(subject)
        if lane is None or not lane.flowing:
            return False
        assert self.progress is not None
        self.progress.hold(msg)
        ahead.add(lane, msg, now)
        self.changed.set()
        return True

    def moved(self, subject: str) -> None:
        """The sorter stored a call on `subject`: count it without waiting for discovery."""
        lane = self.lane(subject)
        if lane is not None:
            lane.backlog += 1
            self.changed.set()

    def _drop(self, lane: Lane) -> None:
        self.lanes.pop(lane.subject, None)
        self.puller.by_inbox.pop(lane.inbox, None)

    async def _ensure_consumer(self, lane: Lane) -> None:
        config = js_api.ConsumerConfig(
            durable_name=lane.durable,
            filter_subject=lane.subject,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            max_ack_pending=-1,
            max_waiting=512,
            inactive_threshold=self.inactive_threshold,
        )
        try:
            await self.js.add_consumer(self.stream, config)
        except (NatsError, TimeoutError) as exc:
            log.warning("cannot create consumer %s: %s", lane.durable, describe(exc))
        else:
            lane.consumer_ready = True
            self.changed.set()
        finally:
            lane.creating = False

    # -- discovery ----------------------------------------------------------------------------

    async def discover(self) -> None:
        """Read the backlog per function subject, forever (a task of the worker's)."""
        while True:
            with contextlib.suppress(BacklogUnreadable):
                self.observe(await subject_counts(self.js, self.stream, self.filter))
            self._sweep(time.monotonic())
            self.changed.set()
            await asyncio.sleep(DISCOVERY_SECONDS)

    def observe(self, counts: dict[str, int]) -> None:
        """Backlogs as JetStream reports them; functions with one get a lane and a consumer."""
        for lane in self.lanes.values():
            lane.backlog = counts.get(lane.subject, 0) + lane.plain
        for subject, count in counts.items():
            if count and subject not in self.lanes:
                made = self.lane(subject)
                if made is None:
                    break
                made.backlog = count
        for lane in self.lanes.values():
            if lane.backlog and not lane.consumer_ready and not lane.creating:
                lane.creating = True
                asyncio.get_running_loop().create_task(self._ensure_consumer(lane))

    def _sweep(self, now: float) -> None:
        """Forget pull requests never answered; drop lanes idle past the inactive threshold."""
        for lane in list(self.lanes.values()):
            if lane.requests and now - lane.requests[0][2] > REQUEST_FORGET_SECONDS:
                self.puller.requests_ended(lane, int(lane.requests[0][0]))
            since = lane.idle_since()
            if since is not None and now - since > self.inactive_threshold:
                self._drop(lane)

    # -- asking for work ----------------------------------------------------------------------

    async def fill(self, free: int) -> None:
        """Give up to `free` slots to lanes in the fair order and ask for their messages.

        Only lanes with something to run (held, delivered ahead, or stored beyond what runs
        and was asked for) take part, and a lane's room is worked out only when its turn
        comes (`allot`): with hundreds of lanes and a few free slots, most are never looked
        at. A lane that is paused or held back by its breaker is looked at every time (its
        breaker's clock moves on here)."""
        now = time.monotonic()
        hopeful: list[Lane] = []
        for lane in self.lanes.values():
            if not lane.flowing:
                if lane.ready:  # paused or held back: nothing kept ahead
                    self.puller.return_ready(lane, self.return_unrun)
                lane.room(now, self.batch_max)  # for its breaker's clock: half-open when due
            if lane.unsorted:
                self._sort_aged(lane, now)
            if lane.has_work:
                hopeful.append(lane)
        if hopeful and free > 0:
            batch_max = self.batch_max
            result = allot(
                [lane.turn for lane in hopeful],
                free,
                self._base,
                self._seq,
                lambda index: hopeful[index].room(now, batch_max),
            )
            self._base, self._seq = result.base, result.seq
            for index in sorted(result.served):  # in lane order, as they were made
                lane = hopeful[index]
                # an ask may yield to the event loop (nats-py flushing), and a late delivery
                # may take a slot meanwhile: never take more than are free now
                count = min(result.counts[lane.subject], self.slots.free)
                if count > 0:
                    asked = count - self.puller.start_ready(lane, count)
                    if asked:
                        await self.puller.ask(lane, asked, now)
                    free -= count
        await self._ask_ahead(now)
        await self._listen(free // 2, now)

    def _sort_aged(self, lane: Lane, now: float) -> None:
        """Calls from the plain subject the lane can no longer hold go to its subject."""
        assert self.sort_ahead is not None and self.move is not None
        for msg in self.sort_ahead.aged(lane, now):
            if self.progress is not None:
                self.progress.release(msg)
            self.move(msg, lane.subject)

    async def _ask_ahead(self, now: float) -> None:
        """Lanes in flow ask for a few messages ahead of a free slot, within `ahead` in all."""
        room = self.ahead - self.puller.held_ahead
        if room <= 0 or self.puller.stopping:
            return
        for lane in self.lanes.values():
            share = min(self.ahead, max(1, lane.allowed // AHEAD_SHARE))
            count = min(lane.room_ahead(now, share), room)
            if count > 0 and (count * 2 >= share or not (lane.ready or lane.asked_ahead)):
                # refilled by halves: one pull request per few calls, not one per call
                await self.puller.ask(lane, count, now, ahead=True)
                room -= count
                if room <= 0:
                    return

    async def _listen(self, spare: int, now: float) -> None:
        """Lanes with nothing waiting but recent calls keep one pull request waiting at the
        server (one message, `LISTEN_SECONDS`), out of slots nobody else asked for, so the
        next call of a function in use starts at once rather than at the next discovery."""
        for lane in self.lanes.values():
            if spare <= 0 or self.slots.free <= 0:
                return
            if (
                lane.consumer_ready
                and lane.known
                and not lane.requests
                and not lane.waiting
                and lane.inflight < lane.allowed
                and now >= lane.paused_until
                and lane.flowing
                and now - lane.active_at < self.inactive_threshold
            ):
                await self.puller.ask(lane, 1, now, wait=LISTEN_SECONDS)
                spare -= 1

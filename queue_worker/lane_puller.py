"""The fair scheduler's pulling: the lanes' pull requests, their one shared inbox, and the
messages a lane was delivered ahead of a free slot.

Each pull request names its lane and its number in the reply subject (`{inbox}.{number}`), so
one subscription serves every lane. A request reserves a slot for each message it asks for
until the message arrives or the server says there are none; one asked for `ahead` reserves
none and counts against the messages held ahead instead. A message delivered ahead is held in
progress like a running call and starts only when the fair order gives its lane a slot
(`start_ready`); a lane that is paused or held back by its breaker keeps none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from connectors.core.slots import Slots
from queue_worker.lanes import Lane
from queue_worker.progress import ProgressKeeper
from queue_worker.sort_ahead import SortAhead

log = logging.getLogger("ferry.queue_worker.fair")

LISTEN_SECONDS = 1.0  # how long a lane's listening pull request waits at the server
REQUEST_FORGET_SECONDS = LISTEN_SECONDS + 4.0  # a pull request unanswered this long is assumed lost


class LanePuller:
    def __init__(
        self,
        nc: Client,
        *,
        stream: str,
        lanes: dict[str, Lane],
        slots: Slots,
        changed: asyncio.Event,
        start: Callable[[Msg, Lane], None],
        refuse: Callable[[Msg], None],
        progress: ProgressKeeper | None,
        sort_ahead: SortAhead | None = None,
    ) -> None:
        self.nc = nc
        self.sort_ahead = sort_ahead  # calls from the plain subject the lanes hold
        self.stream = stream
        self.lanes = lanes  # the scheduler's, by subject
        self.by_inbox: dict[str, Lane] = {}
        self.slots = slots
        self.changed = changed
        self.start_call = start
        self.refuse = refuse  # hand a message back unrun
        self.progress = progress
        self.held_ahead = 0  # delivered ahead or asked for ahead, all lanes
        self.inbox_prefix = ""
        self._request_count = 0
        self._sub: Subscription | None = None
        self.stopping = False

    async def start(self) -> None:
        self.inbox_prefix = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(f"{self.inbox_prefix}.>", cb=self._receive)

    async def stop(self) -> None:
        """Stop asking; wait (at most one listening request's time) until the server has ended
        every pull request, refusing what still arrives, so no message is delivered to an
        inbox nobody reads (it would come back only after `ack_wait`)."""
        self.stopping = True
        deadline = time.monotonic() + LISTEN_SECONDS + 0.5
        while any(lane.requests for lane in self.lanes.values()) and time.monotonic() < deadline:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self.changed.wait()
        self.hand_back_ahead()
        if self._sub is not None:
            with contextlib.suppress(NatsError):
                await self._sub.unsubscribe()
            self._sub = None

    # -- messages held ahead ------------------------------------------------------------------

    def hand_back_ahead(self) -> None:
        """Every message held ahead goes back (another replica may run it now)."""
        for lane in self.lanes.values():
            self.return_ready(lane, self.refuse)
            if self.sort_ahead is not None:
                while lane.unsorted:
                    msg = self.sort_ahead.drop(lane)
                    if self.progress is not None:
                        self.progress.release(msg)
                    self.refuse(msg)

    def return_ready(self, lane: Lane, how: Callable[[Msg], None]) -> None:
        while lane.ready:
            msg = lane.ready.popleft()
            self.held_ahead -= 1
            if self.progress is not None:
                self.progress.release(msg)
            how(msg)

    def start_ready(self, lane: Lane, count: int) -> int:
        """Start up to `count` of the lane's messages held from the plain subject or delivered
        ahead (in that order); how many started."""
        started = 0
        while started < count and not self.stopping:
            if lane.unsorted:
                assert self.sort_ahead is not None
                msg = self.sort_ahead.take(lane)
            elif lane.ready:
                msg = lane.ready.popleft()
                self.held_ahead -= 1
            else:
                break
            if self.progress is not None:
                self.progress.release(msg)
            self.slots.take()
            lane.delivered()
            self.start_call(msg, lane)
            started += 1
        return started

    # -- pull requests ------------------------------------------------------------------------

    async def ask(
        self, lane: Lane, count: int, now: float, wait: float = 0.0, ahead: bool = False
    ) -> None:
        """One `no_wait` pull request for `count` messages, their slots reserved meanwhile
        (or, `ahead`, counted against the messages held ahead). The server serves a
        consumer's requests in order, so deliveries fill the oldest."""
        if ahead:
            self.held_ahead += count
            lane.asked_ahead += count
        else:
            self.slots.take(count)
        self._request_count += 1
        number = self._request_count
        lane.requests.append([number, count, now, 1 if ahead else 0])
        lane.asked += count
        if wait:
            body = json.dumps({"batch": count, "expires": int(wait * 1e9)}).encode()
        else:
            body = json.dumps({"batch": count, "no_wait": True}).encode()
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{lane.durable}"
        try:
            await self.nc.publish(subject, body, reply=f"{lane.inbox}.{number}")
        except NatsError as exc:
            log.warning("pull request for %s failed: %s", lane.durable, exc)
            self.requests_ended(lane, number)

    def requests_ended(self, lane: Lane, number: int) -> None:
        """Request `number` (and any older one) will deliver nothing more: free what is due."""
        while lane.requests and lane.requests[0][0] <= number:
            _, left, _, ahead = lane.requests.popleft()
            due = int(left)
            if due and ahead:
                self.held_ahead -= due
                lane.asked_ahead -= due
                lane.asked -= due
            elif due:
                self.slots.release(due)
                lane.asked -= due
        self.changed.set()

    def forget_requests(self) -> None:
        """After a reconnect the server has dropped every waiting pull request."""
        for lane in self.lanes.values():
            if lane.requests:
                self.requests_ended(lane, int(lane.requests[-1][0]))

    # -- receiving ----------------------------------------------------------------------------

    async def _receive(self, msg: Msg) -> None:
        if msg.reply:  # a message (status messages have no reply subject)
            self._deliver(msg)
            return
        inbox, _, number = msg.subject.rpartition(".")
        lane = self.by_inbox.get(inbox)
        if lane is None or not number.isdigit():
            return
        status = msg.headers.get("Status") if msg.headers else None
        if status in ("404", "408"):  # nothing (more) to deliver now
            lane.backlog = lane.inflight + len(lane.unsorted)
        elif status is not None and status != "100":  # 409 or 503: the consumer is gone
            lane.consumer_ready = False
            if status == "409" and msg.headers:
                log.info("pull from %s refused: %s", lane.durable, msg.headers.get("Description"))
        self.requests_ended(lane, int(number))

    def _deliver(self, msg: Msg) -> None:
        lane = self.lanes.get(msg.subject)
        ahead = False
        if lane is not None and lane.requests:
            oldest = lane.requests[0]
            oldest[1] -= 1
            lane.asked -= 1
            if oldest[3]:
                ahead = True
                lane.asked_ahead -= 1
            if oldest[1] <= 0:
                lane.requests.popleft()
                self.changed.set()  # one more request may be sent
        elif self.slots.free > 0 and lane is not None:  # late, after its request was forgotten
            self.slots.take()
        else:
            self.refuse(msg)
            return
        if self.stopping:
            if ahead:
                self.held_ahead -= 1
            else:
                self.slots.release()
            self.refuse(msg)
            return
        if ahead:  # held until the fair order gives its lane a slot
            assert self.progress is not None
            self.progress.hold(msg)
            lane.ready.append(msg)
            self.changed.set()
            return
        lane.delivered()
        self.start_call(msg, lane)

"""A JetStream pull consumer that hands each message over the moment it arrives.

nats-py's `fetch` returns only once it has collected its whole batch, so slots freed in the
meantime sit idle. The `Puller` instead keeps pull requests at the server for exactly the free
slots (never more), with an inbox whose callback passes every delivered message straight to the
worker. Requests expire after `PULL_EXPIRES`; the server answers an expired request with a
status message, and the puller forgets requests it has heard nothing of for too long, so its
count of outstanding messages cannot drift for ever.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

PULL_EXPIRES = 5.0  # seconds a pull request waits at the server
FORGET_AFTER = PULL_EXPIRES + 2.0  # a request silent this long is assumed gone
MAX_REQUESTS = 8  # waiting requests per worker (the consumer allows 512 in all)


class _Request:
    __slots__ = ("deadline", "remaining")

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.deadline = time.monotonic() + FORGET_AFTER


class Puller:
    def __init__(
        self, nc: Client, stream: str, durable: str, deliver: Callable[[Msg], None]
    ) -> None:
        self.nc = nc
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.deliver = deliver
        self.changed = asyncio.Event()
        self._requests: collections.deque[_Request] = collections.deque()
        self._inbox = ""
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._receive)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    @property
    def outstanding(self) -> int:
        """Messages asked for and not yet delivered."""
        now = time.monotonic()
        while self._requests and self._requests[0].deadline < now:
            self._requests.popleft()
        return sum(r.remaining for r in self._requests)

    def can_request(self) -> bool:
        return self._sub is not None and len(self._requests) < MAX_REQUESTS

    async def request(self, count: int) -> None:
        """Ask the server for up to `count` more messages."""
        body = json.dumps({"batch": count, "expires": int(PULL_EXPIRES * 1e9)}).encode()
        self._requests.append(_Request(count))
        await self.nc.publish(self.subject, body, reply=self._inbox)

    def forget_all(self) -> None:
        """After a reconnect the server has dropped our waiting requests."""
        self._requests.clear()
        self.changed.set()

    def poke(self) -> None:
        """Something changed (a slot was freed): the worker may ask for more."""
        self.changed.set()

    async def _receive(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            # A delivery takes a slot as it uses up a request's share, so what may be asked for
            # is unchanged: the worker is woken only when a whole request is used up (one more
            # may then be sent).
            finished = self._delivered()
            self.deliver(msg)
            if finished:
                self.changed.set()
            return
        if status != "100":  # 404/408: the oldest request ended; 409: it was refused
            if status == "409" and msg.headers:
                log.warning("pull request refused: %s", msg.headers.get("Description", ""))
            if self._requests:
                self._requests.popleft()
        self.changed.set()

    def _delivered(self) -> bool:
        """Count a delivery against the oldest request; True if that request is used up."""
        if self._requests:
            oldest = self._requests[0]
            oldest.remaining -= 1
            oldest.deadline = time.monotonic() + FORGET_AFTER
            if oldest.remaining <= 0:
                self._requests.popleft()
                return True
        return False

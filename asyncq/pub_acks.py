"""JetStream publishes that wait for their PubAck through one reply subscription.

nats-py's `js.publish` makes a request per message: a reply inbox from NUID and random bytes,
a future with a callback, a timer (`asyncio.wait_for`), a parsed `PubAck` dataclass through
its generic `from_response`. The front door stores every call it accepts that way, so this is
the same exchange made leaner: replies come to `<inbox>.<n>` under one wildcard subscription,
`n` a counter; each publish waits on a plain future, and one periodic sweep gives up on the
answers that did not come in time instead of a timer per message.

The guarantee is the same as `asyncq.jetstream.publish`'s: the coroutine returns only once
JetStream answered that it stored the message, and raises a `PublishError` otherwise (never
stored, no answer in time, not connected), so a 202 still means stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections import deque

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from nats.js import api as js_api

from asyncq.jetstream import NeverStorable, NoStream, PublishError
from connectors.core.supervision import cancel_and_wait
from connectors.jetstream.connect import describe

SWEEP_SECONDS = 0.05  # how often answers that are late are given up on


class PubAcks:
    """Publishes to JetStream and hands each publisher its own PubAck (one instance per
    connection; start it once connected)."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._inbox = f"_INBOX.acks{os.urandom(8).hex()}."
        self._next = 0
        self._waiting: dict[int, asyncio.Future[js_api.PubAck]] = {}
        self._deadlines: deque[tuple[float, int]] = deque()  # in the order they were sent
        self._sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self._inbox + "*", cb=self._answered)
        self._sweeper = asyncio.create_task(self._sweep(), name="pub-acks-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            await cancel_and_wait(self._sweeper)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(PublishError("the publisher closed before JetStream answered"))
        self._waiting.clear()
        if self._sub is not None:
            with contextlib.suppress(NatsError):
                await self._sub.unsubscribe()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The sweeper, for the process to watch (without it, no publish would time out)."""
        return [self._sweeper] if self._sweeper is not None else []

    @property
    def waiting(self) -> int:
        """Publishes still waiting for their answer."""
        return len(self._waiting)

    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None,
        *,
        stream: str,
        timeout: float,
    ) -> js_api.PubAck:
        """Publish and wait until JetStream says it stored the message in `stream`."""
        headers = headers if headers is not None else {}
        headers["Nats-Expected-Stream"] = stream  # as nats-py's js.publish does, in place
        self._next = number = self._next + 1
        future: asyncio.Future[js_api.PubAck] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        self._deadlines.append((time.monotonic() + timeout, number))
        try:
            await self.nc.publish(subject, data, reply=self._inbox + str(number), headers=headers)
        except MaxPayloadError:
            self._waiting.pop(number, None)
            raise NeverStorable(
                f"the message for {subject} ({len(data)} bytes) is larger than NATS's max_payload"
            ) from None
        except (NatsError, OSError) as exc:
            self._waiting.pop(number, None)
            raise PublishError(
                f"JetStream did not store the message on {subject}: {describe(exc)}"
            ) from None
        try:
            return await future
        finally:
            self._waiting.pop(number, None)  # cancelled: forget it

    async def _answered(self, msg: Msg) -> None:
        try:
            number = int(msg.subject[len(self._inbox) :])
        except ValueError:
            return
        future = self._waiting.pop(number, None)
        if future is None or future.done():
            return  # given up on already
        try:
            future.set_result(read_ack(msg.subject, msg.data, msg.headers))
        except PublishError as exc:
            future.set_exception(exc)

    async def _sweep(self) -> None:
        """Fail the publishes whose answer is overdue. Deadlines are checked in the order the
        messages were sent; with one timeout for all (the front door's) that is their order."""
        deadlines, waiting = self._deadlines, self._waiting
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            while deadlines and (deadlines[0][0] <= now or deadlines[0][1] not in waiting):
                _, number = deadlines.popleft()
                future = waiting.pop(number, None)
                if future is not None and not future.done():
                    future.set_exception(
                        PublishError("JetStream did not store the message: no answer in time")
                    )


def read_ack(subject: str, data: bytes, headers: dict[str, str] | None) -> js_api.PubAck:
    """JetStream's answer to a publish as a PubAck; PublishError if it says not stored."""
    if headers and headers.get("Status") == "503":
        raise NoStream("no stream holds the subject (no responders)")
    quick = _plain_ack(data)
    if quick is not None:
        return quick
    try:
        answer = json.loads(data)
        error = answer.get("error")
        if error is None:
            return js_api.PubAck(
                stream=answer["stream"],
                seq=int(answer["seq"]),
                duplicate=answer.get("duplicate"),
                domain=answer.get("domain"),
            )
    except (ValueError, TypeError, KeyError, AttributeError):
        raise PublishError(f"JetStream's answer is not a PubAck: {data[:200]!r}") from None
    raise PublishError(f"JetStream did not store the message: {str(error)[:200]}")


_PLAIN = re.compile(rb'\{"stream":"([^"\\]+)","seq":(\d{1,19})(,"duplicate":true)?\}')


def _plain_ack(data: bytes) -> js_api.PubAck | None:
    """The PubAck nats-server writes for a stored message (`{"stream":..,"seq":..}`, perhaps
    with `"duplicate":true`), read without a JSON parser; None for any other answer."""
    match = _PLAIN.fullmatch(data)
    if match is None:
        return None
    stream, seq, duplicate = match.groups()
    return js_api.PubAck(
        stream=stream.decode(), seq=int(seq), duplicate=True if duplicate else None
    )

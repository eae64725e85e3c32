"""Moves calls from the queue's plain subject to their function's subject (fair mode).

OpenFaaS gateways and Go clients publish every call on `faas-request` (or
`faas-request.NAME`); the sorter takes them from the queue's usual durable consumer and stores
each on its function's subject, where that function's consumer takes it. A move publishes a
copy (same data, same headers) and only once JetStream has stored it acknowledges the
original: a crash in between delivers the original again, and the copy's `Nats-Msg-Id`
(`ferry-moved-{stream sequence}`) makes JetStream drop the second copy, as long as the move is
repeated within the stream's duplicate window (120 s; the original comes back after
`ack_wait`). Cost per moved call: one decode, one publish, one ack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from asyncq import codec
from asyncq.jetstream import PublishError, publish
from asyncq.layout import function_subject
from connectors.core.errors import DecodeError
from queue_worker.outcomes import HAND_BACK_DELAY_SECONDS, hand_back, seq
from queue_worker.puller import Puller

log = logging.getLogger("ferry.queue_worker.sorter")

MOVES_AT_ONCE = 64
MOVED_ID = "ferry-moved-{seq}"


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
    ) -> None:
        self.js = js
        self.stream = stream
        self.subjects = subjects
        self.queue_name = queue_name
        self.moved = moved
        self.undecodable = undecodable
        self.spawn = spawn
        self.at_once = at_once
        self.moving = 0
        self.puller = Puller(nc, stream, durable, self._deliver)
        self.stopping = False

    async def start(self) -> None:
        await self.puller.start()

    async def stop(self) -> None:
        self.stopping = True
        await self.puller.stop()

    async def ask(self) -> None:
        """Keep pull requests at the server for as many moves as may run at once."""
        wanted = self.at_once - self.moving - self.puller.outstanding
        if wanted > 0 and self.puller.can_request() and not self.stopping:
            await self.puller.request(wanted)

    def _deliver(self, msg: Msg) -> None:
        if self.stopping:
            self.spawn(hand_back(msg))
            return
        self.moving += 1
        self.spawn(self._move(msg))

    async def _move(self, msg: Msg) -> None:
        try:
            try:
                request = codec.decode(msg.data)
            except DecodeError as exc:
                named = exc.function if isinstance(exc, codec.InvalidFunctionName) else ""
                await self.undecodable(msg, str(exc), named)
                return
            subject = function_subject(self.subjects, self.queue_name, request.function)
            headers = {key: str(value) for key, value in (msg.headers or {}).items()}
            headers["Nats-Msg-Id"] = MOVED_ID.format(seq=seq(msg))
            await publish(self.js, subject, msg.data, headers=headers, stream=self.stream)
            await msg.ack()
            self.moved(subject)
        except asyncio.CancelledError:
            await hand_back(msg)
            raise
        except (PublishError, NatsError, TimeoutError) as exc:
            log.warning("could not move message %s, handing it back: %s", seq(msg), exc)
            await hand_back(msg, delay=HAND_BACK_DELAY_SECONDS)
        finally:
            self.moving -= 1
            self.puller.poke()

"""Static mode: one consumer on the queue's subject, asked for exactly what free slots and the
prefetch buffer have room for (`puller`), each message started the moment it arrives or kept
ahead of a free slot (`prefetch`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from connectors.core.slots import Slots
from connectors.core.supervision import raise_if_ended
from connectors.jetstream.connect import NatsConnection
from queue_worker.expiry import CallClock
from queue_worker.handler import MessageHandler
from queue_worker.held_answers import HeldAnswers
from queue_worker.outcomes import hand_back
from queue_worker.prefetch import Prefetched
from queue_worker.puller import Puller

log = logging.getLogger("ferry.queue_worker")

REQUEST_CHECK_SECONDS = 1.0  # re-check outstanding pull requests at least this often


class StaticMode:
    def __init__(
        self,
        nc: Client,
        *,
        stream: str,
        durable: str,
        calls: MessageHandler,
        slots: Slots,
        held: HeldAnswers,
        prefetched: Prefetched,
        clock: CallClock,
        stopping: asyncio.Event,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.puller = Puller(nc, stream, durable, self.deliver)
        self.handle = calls.handle
        self.slots = slots
        self.held = held
        self.prefetched = prefetched
        self.clock = clock
        self.stopping = stopping  # the worker's
        self.spawn = spawn
        calls.slot_freed = self.slot_freed

    async def start(self) -> None:
        await self.puller.start()

    async def run(self, nats: NatsConnection, helpers: list[asyncio.Task[None]]) -> None:
        """Ask for work until the worker stops; `helpers` are the worker's tasks that must not
        end meanwhile."""
        puller = self.puller
        # One pass per event that may let the worker ask for more: a slot freed, a pull
        # request ended, the finishing count fell below its limit, a reconnect, stop. Woken
        # once or twice per message, so the pass itself makes no tasks.
        while not self.stopping.is_set():
            raise_if_ended(helpers)  # a helper that died ends the process (exit 1)
            puller.changed.clear()
            wanted = self.slots.free + self.prefetched.room - puller.outstanding
            if self.held.full:
                wanted = 0
            if wanted > 0 and puller.can_request() and nats.connected:
                try:
                    await puller.request(wanted)
                except NatsError as exc:
                    log.warning("pull request failed, retrying: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REQUEST_CHECK_SECONDS):
                    await puller.changed.wait()

    def stop_taking(self) -> None:
        for msg in self.prefetched.take_all():  # another replica may run them now
            self.spawn(hand_back(msg))
        self.puller.poke()

    def on_reconnect(self) -> None:
        self.puller.forget_all()

    async def stop(self) -> None:
        with contextlib.suppress(NatsError, TimeoutError):
            await self.puller.stop()

    def deliver(self, msg: Msg) -> None:
        """A message arrived for one of our pull requests: start it, keep it, or hand it back."""
        if self.stopping.is_set():
            self.spawn(hand_back(msg))
        elif (early := self.clock.wait(msg)) is not None:  # not due yet: no slot taken
            self.spawn(hand_back(msg, delay=early))
        elif self.slots.free > 0 and not self.held.full:
            self._start(msg)
        elif not self.prefetched.offer(msg):
            self.spawn(hand_back(msg))

    def _start(self, msg: Msg) -> None:
        self.slots.take()
        self.spawn(self.handle(msg))

    def slot_freed(self) -> None:
        """A waiting message takes the slot at once; otherwise the puller may ask for more."""
        if self.stopping.is_set() or self.held.full:
            pass  # a prefetched message waits (held in progress) until there is room
        elif (msg := self.prefetched.take()) is not None:
            self._start(msg)
            return
        self.puller.poke()

    def room(self) -> None:
        """Held answers fell below their bounds: waiting messages take the free slots, and the
        puller may ask for more."""
        while not self.stopping.is_set() and self.slots.free > 0:
            msg = self.prefetched.take()
            if msg is None:
                break
            self._start(msg)
        self.puller.poke()

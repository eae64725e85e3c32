"""The JetStream queue worker: fetch only what free slots allow, invoke, retry via the broker.

`QueueWorker` starts the parts (streams, the queue's consumer, the ledger, large bodies, the
outcome recorder), then receives in one of two ways: `static_mode` (one consumer on the queue's
subject) or `fair_mode` (a lane and a consumer per function). Either starts each message in a
task of its own through the `handler`; the worker tells readiness, stops taking work, and
drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from asyncq import jetstream
from asyncq.deadletter import DeadLetterWriter
from asyncq.large_bodies import BodyStore
from asyncq.layout import durable_name, queue_subject
from asyncq.schedule import all_waiting
from connectors.core.callback import CallbackSender
from connectors.core.drain import finish_or_cancel
from connectors.core.gateway import GatewayClient
from connectors.core.invoker import Invoker
from connectors.core.retry import RetryPolicy
from connectors.core.slots import Slots
from connectors.core.supervision import cancel_and_wait
from connectors.jetstream.connect import NatsConnection, connect
from queue_worker.config import FAIR, QueueWorkerConfig
from queue_worker.consumer import ensure_consumer
from queue_worker.delay_waker import start_waker
from queue_worker.expiry import CallClock
from queue_worker.fair_metrics import FairCollector
from queue_worker.fair_mode import FairMode, warn_of_fair_backlog
from queue_worker.handler import MessageHandler
from queue_worker.held_answers import HeldAnswers
from queue_worker.metrics import QueueWorkerMetrics
from queue_worker.outcomes import OutcomeRecorder
from queue_worker.prefetch import Prefetched, auto_prefetch
from queue_worker.progress import ProgressKeeper
from queue_worker.static_mode import StaticMode
from queue_worker.worker_ledger import WorkerLedger

log = logging.getLogger("ferry.queue_worker")

PENDING_REFRESH_SECONDS = 5.0


class QueueWorker:
    name = "queue-worker"

    def __init__(self, config: QueueWorkerConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.metrics = QueueWorkerMetrics(
            self.registry, config.max_inflight, per_function=config.scaling_mode == FAIR
        )
        self.clock = CallClock(config.max_event_age, self.registry)
        self.policy = RetryPolicy.from_settings(config.retry)
        self.gateway = GatewayClient(config.gateway, max_inflight=config.max_inflight)
        self.invoker = Invoker(self.gateway)
        self.callbacks = CallbackSender(
            config.callbacks, concurrency=max(16, min(config.max_inflight, 256))
        )
        self.slots = Slots(config.max_inflight)
        self.held = HeldAnswers(config.max_inflight, config.max_held_answer_bytes, self._room)
        self.metrics.finishing.set_function(lambda: self.held.count)
        self.metrics.held_bytes.set_function(lambda: self.held.bytes)
        self.metrics.inflight.set_function(lambda: self.slots.used)
        self.progress = ProgressKeeper(config.ack_wait)
        prefetch = config.prefetch
        self.prefetched = Prefetched(
            auto_prefetch(config.max_inflight) if prefetch is None else prefetch, self.progress
        )
        self.metrics.prefetched.set_function(
            lambda: len(self.prefetched) + (self.fair.held_ahead if self.fair is not None else 0)
        )
        self.subject = queue_subject(config.nats.nats_stream, config.queue_name)
        self.durable = config.nats_durable or durable_name(config.queue_name)
        self.stream = config.nats.nats_stream  # until start finds the stream holding the subject
        self._nats: NatsConnection | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._static: StaticMode | None = None
        self.fair: FairMode | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._waker: asyncio.Task[None] | None = None  # delayed calls without schedules
        self.calls: MessageHandler | None = None  # once started: what runs each message
        self._stopping = asyncio.Event()
        self._started = False  # every part of start() done: only then ready
        self.ledger = WorkerLedger(
            config.ledger, self.registry, replicas=config.nats.nats_stream_replicas
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        nats = self.config.nats
        self._nats = await connect(
            nats,
            name=f"ferry-queue-worker-{self.durable}",
            on_reconnect=self._on_reconnect,
        )
        self._nc = self._nats.client
        self._js = self._nc.jetstream()
        self.stream = await jetstream.ensure_streams(
            self._js,
            nats.nats_stream,
            nats.dead_letter_stream,
            replicas=nats.nats_stream_replicas,
            subject=self.subject,
            delayed=nats.delayed_stream,
        )
        self._waker = await start_waker(
            self._js, nats.delayed_stream_name, self.stream, nats.nats_stream
        )
        await ensure_consumer(
            self._js,
            self.stream,
            self.durable,
            self.subject,
            ack_wait=self.config.ack_wait,
            owned=self.durable == durable_name(self.config.queue_name),
        )
        await self.ledger.start(self._nc, self._js)
        bodies = BodyStore.from_settings(self._js, nats)
        outcomes = OutcomeRecorder(
            DeadLetterWriter(self._js, nats.dead_letter_stream),
            bodies,
            self.callbacks,
            self.metrics,
            self.ledger,
            expired_count=lambda function: self.clock.metrics.expired.labels(function).inc(),
        )
        self.calls = calls = MessageHandler(
            self.config,
            invoker=self.invoker,
            outcomes=outcomes,
            bodies=bodies,
            ledger=self.ledger,
            clock=self.clock,
            progress=self.progress,
            held=self.held,
            metrics=self.metrics,
            policy=self.policy,
            slots=self.slots,
            subject=self.subject,
            durable=self.durable,
        )
        if self.config.scaling_mode == FAIR:
            await self._start_fair(self._nc, self._js, outcomes, calls)
            self._started = True
            return
        self._static = StaticMode(
            self._nc,
            stream=self.stream,
            durable=self.durable,
            calls=calls,
            slots=self.slots,
            held=self.held,
            prefetched=self.prefetched,
            clock=self.clock,
            stopping=self._stopping,
            spawn=self._spawn,
        )
        await self._static.start()
        await warn_of_fair_backlog(self._js, self.stream, nats.nats_stream, self.config.queue_name)
        self._started = True
        log.info(
            "serving %s (stream %s, consumer %s) with max_inflight=%d, prefetch=%d via %s",
            self.subject,
            self.stream,
            self.durable,
            self.config.max_inflight,
            self.prefetched.limit,
            self.config.gateway.gateway_url,
        )

    async def _start_fair(
        self, nc: Client, js: JetStreamContext, outcomes: OutcomeRecorder, calls: MessageHandler
    ) -> None:
        """Per-function subjects, consumers and lanes, fed by the sorter (`fair_mode`)."""
        self.fair = FairMode(
            nc,
            js,
            self.config,
            stream=self.stream,
            durable=self.durable,
            slots=self.slots,
            calls=calls,
            clock=self.clock,
            spawn=self._spawn,
            undecodable=outcomes.undecodable,
            progress=self.progress,
            ahead=self.prefetched.limit,
        )
        FairCollector(self.registry, self.fair.lanes, self.fair.sorter)
        await self.fair.start()

    def ready(self) -> bool:
        return (
            self._started
            and self._nats is not None
            and self._nats.connected
            and not self._stopping.is_set()
        )

    def stop(self) -> None:
        self._stopping.set()
        if self._static is not None:
            self._static.stop_taking()
        if self.fair is not None:
            self.fair.stop_taking()

    async def run(self) -> None:
        """Pull work until stopped; raise NatsLost if NATS closes the connection for good."""
        assert self._nats is not None
        await self._nats.while_open(self._pull())

    async def _pull(self) -> None:
        assert self._nats is not None
        refresher = asyncio.create_task(self._refresh_pending(), name="pending-gauges")
        self.progress.start()
        helpers = [refresher, *self.progress.tasks, *self.ledger.tasks]
        try:
            if self.fair is not None:
                await self.fair.run(self._nats, self._stopping, lambda: not self.held.full, helpers)
            else:
                assert self._static is not None
                await self._static.run(self._nats, helpers)
        finally:
            await cancel_and_wait(refresher)

    async def drain(self, timeout: float) -> None:
        """Finish in-flight messages within `timeout`; hand the rest back to JetStream."""
        self.stop()
        if self._tasks:
            log.info("waiting for %d in-flight messages", len(self._tasks))
            if cancelled := await finish_or_cancel(self._tasks, timeout):
                log.warning("handed %d unfinished messages back to JetStream", cancelled)
        await self.progress.stop()
        if self._waker is not None:
            await cancel_and_wait(self._waker)
        if self._static is not None:
            await self._static.stop()
        if self.fair is not None:
            await self.fair.stop()
        await self.gateway.close()
        await self.callbacks.close()
        await self.ledger.close()
        if self._nats is not None:
            await self._nats.close()

    def _room(self) -> None:
        """Held answers fell below their bounds: the receiving path may start or ask for more."""
        if self._static is not None:
            self._static.room()
        if self.fair is not None:
            self.fair.changed.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connection events and gauges --------------------------------------------------------

    async def _on_reconnect(self) -> None:
        if self._static is not None:
            self._static.on_reconnect()
        if self.fair is not None:
            self.fair.on_reconnect()
        self.metrics.reconnects.inc()

    async def _refresh_pending(self) -> None:
        assert self._js is not None
        while True:
            with contextlib.suppress(NatsError, TimeoutError):
                info = await self._js.consumer_info(self.stream, self.durable)
                if self.metrics.pending is not None:
                    self.metrics.pending.labels("").set(info.num_pending or 0)
                self.metrics.ack_pending.set(info.num_ack_pending or 0)
                nats = self.config.nats
                waiting = await all_waiting(
                    self._js, self.stream, nats.nats_stream, nats.delayed_stream_name
                )
                self.clock.metrics.waiting.set(waiting)
            await asyncio.sleep(PENDING_REFRESH_SECONDS)

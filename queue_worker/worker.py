"""The JetStream queue worker: fetch only what free slots allow, invoke, retry via the broker.

Per message: decode (or dead-letter), invoke through the gateway while telling JetStream the
message is in progress, then map the outcome onto the broker: `nak(delay)` for a retry, or for a
final outcome (success, non-retried error, retries exhausted) dead-letter if it failed, deliver
the callback, and only then `ack`. The invocation slot is freed as soon as the function answers,
so a slow callback receiver never blocks invocations.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from asyncq import codec, jetstream
from asyncq.codec import QueueRequest
from asyncq.deadletter import DeadLetterWriter
from asyncq.jetstream import PublishError
from asyncq.large_bodies import BODY_OBJECT, BodyMissing, BodyStore
from asyncq.layout import durable_name, queue_subject
from asyncq.schedule import all_waiting
from connectors.core import tracing
from connectors.core.callback import CallbackSender
from connectors.core.drain import finish_or_cancel
from connectors.core.errors import DecodeError
from connectors.core.gateway import GatewayClient
from connectors.core.invoker import InvocationRequest, Invoker
from connectors.core.retry import RetryPolicy, Verdict
from connectors.core.slots import Slots
from connectors.core.supervision import raise_if_ended
from connectors.jetstream.connect import NatsConnection, connect
from queue_worker.attempt_log import log_attempt
from queue_worker.config import FAIR, QueueWorkerConfig
from queue_worker.consumer import ensure_consumer
from queue_worker.delay_waker import start_waker
from queue_worker.expiry import CallClock
from queue_worker.fair_metrics import FairCollector
from queue_worker.fair_mode import FairMode, warn_of_fair_backlog
from queue_worker.held_answers import HeldAnswers
from queue_worker.lanes import ATTEMPTS_BEFORE, PROBE, RETURNS, Fate, Lane, header_count
from queue_worker.metrics import QueueWorkerMetrics
from queue_worker.outcomes import HAND_BACK_DELAY_SECONDS, OutcomeRecorder, hand_back, seq
from queue_worker.prefetch import Prefetched, auto_prefetch
from queue_worker.process_span import process_span
from queue_worker.progress import ProgressKeeper
from queue_worker.puller import Puller
from queue_worker.worker_ledger import WorkerLedger

if TYPE_CHECKING:
    from connectors.core.spans import Scope

log = logging.getLogger("ferry.queue_worker")

PENDING_REFRESH_SECONDS = 5.0
REQUEST_CHECK_SECONDS = 1.0  # re-check outstanding pull requests at least this often


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
        self._puller: Puller | None = None
        self.fair: FairMode | None = None
        self._bodies: BodyStore | None = None
        self._outcomes: OutcomeRecorder | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._waker: asyncio.Task[None] | None = None  # delayed calls without schedules
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
        self._bodies = BodyStore.from_settings(self._js, nats)
        self._outcomes = OutcomeRecorder(
            DeadLetterWriter(self._js, nats.dead_letter_stream),
            self._bodies,
            self.callbacks,
            self.metrics,
            self.ledger,
            expired_count=lambda function: self.clock.metrics.expired.labels(function).inc(),
        )
        if self.config.scaling_mode == FAIR:
            await self._start_fair(self._nc, self._js, self._outcomes)
            self._started = True
            return
        self._puller = Puller(self._nc, self.stream, self.durable, self._deliver)
        await self._puller.start()
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
        self, nc: Client, js: JetStreamContext, outcomes: OutcomeRecorder
    ) -> None:
        """Per-function subjects, consumers and lanes, fed by the sorter (`fair_mode`)."""
        self.fair = FairMode(
            nc,
            js,
            self.config,
            stream=self.stream,
            durable=self.durable,
            slots=self.slots,
            start=self._start_in_lane,
            spawn=self._spawn,
            undecodable=outcomes.undecodable,
            progress=self.progress,
            ahead=self.prefetched.limit,
        )
        FairCollector(self.registry, self.fair.lanes)
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
        for msg in self.prefetched.take_all():  # another replica may run them now
            self._spawn(hand_back(msg))
        if self._puller is not None:
            self._puller.poke()
        if self.fair is not None:
            self.fair.stop_taking()

    async def run(self) -> None:
        """Pull work until stopped; raise NatsLost if NATS closes the connection for good."""
        assert self._nats is not None
        await self._nats.while_open(self._pull() if self.fair is None else self._pull_fair())

    async def _pull_fair(self) -> None:
        assert self.fair is not None and self._nats is not None
        refresher = asyncio.create_task(self._refresh_pending(), name="pending-gauges")
        self.progress.start()
        helpers = [refresher, *self.progress.tasks, *self.ledger.tasks]
        try:
            await self.fair.run(self._nats, self._stopping, lambda: not self.held.full, helpers)
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)

    async def _pull(self) -> None:
        assert self._puller is not None and self._nats is not None
        nats = self._nats
        refresher = asyncio.create_task(self._refresh_pending(), name="pending-gauges")
        self.progress.start()
        helpers = [refresher, *self.progress.tasks, *self.ledger.tasks]
        puller = self._puller
        try:
            # One pass per event that may let the worker ask for more: a slot freed, a pull
            # request ended, the finishing count fell below its limit, a reconnect, stop. Woken
            # once or twice per message, so the pass itself makes no tasks.
            while not self._stopping.is_set():
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
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)

    async def drain(self, timeout: float) -> None:
        """Finish in-flight messages within `timeout`; hand the rest back to JetStream."""
        self.stop()
        if self._tasks:
            log.info("waiting for %d in-flight messages", len(self._tasks))
            if cancelled := await finish_or_cancel(self._tasks, timeout):
                log.warning("handed %d unfinished messages back to JetStream", cancelled)
        await self.progress.stop()
        if self._waker is not None:
            self._waker.cancel()
            await asyncio.gather(self._waker, return_exceptions=True)
        if self._puller is not None:
            with contextlib.suppress(NatsError, TimeoutError):
                await self._puller.stop()
        if self.fair is not None:
            await self.fair.stop()
        await self.gateway.close()
        await self.callbacks.close()
        await self.ledger.close()
        if self._nats is not None:
            await self._nats.close()

    # -- receiving --------------------------------------------------------------------------

    def _deliver(self, msg: Msg) -> None:
        """A message arrived for one of our pull requests: start it, keep it, or hand it back."""
        if self._stopping.is_set():
            self._spawn(hand_back(msg))
        elif (early := self.clock.wait(msg)) is not None:  # not due yet: no slot taken
            self._spawn(hand_back(msg, delay=early))
        elif self.slots.free > 0 and not self.held.full:
            self._start(msg)
        elif not self.prefetched.offer(msg):
            self._spawn(hand_back(msg))

    def _start(self, msg: Msg) -> None:
        self.slots.take()
        self._spawn(self._handle(msg))

    def _start_in_lane(self, msg: Msg, lane: Lane) -> None:
        """A message a lane asked for: its slot is already taken (and given back at once if
        the message is a delayed call not due yet)."""
        if (early := self.clock.wait(msg)) is not None:
            _SlotHold(self, lane).release()
            self._spawn(hand_back(msg, delay=early))
            return
        admitted = lane.admits()
        if not admitted:  # paused, or its breaker opened since it was asked for
            _SlotHold(self, lane).release()
            assert self.fair is not None
            self._spawn(self.fair.hold_back(msg))
            return
        self._spawn(self._handle(msg, lane, admitted == PROBE))

    def _slot_freed(self) -> None:
        """A waiting message takes the slot at once; otherwise the puller may ask for more."""
        if self.fair is not None:
            self.fair.changed.set()
            return
        if self._stopping.is_set() or self.held.full:
            pass  # a prefetched message waits (held in progress) until there is room
        elif (msg := self.prefetched.take()) is not None:
            self._start(msg)
            return
        if self._puller is not None:
            self._puller.poke()

    def _room(self) -> None:
        """Held answers fell below their bounds: waiting messages take the free slots, and the
        puller may ask for more."""
        while not self._stopping.is_set() and self.slots.free > 0:
            msg = self.prefetched.take()
            if msg is None:
                break
            self._start(msg)
        if self._puller is not None:
            self._puller.poke()
        if self.fair is not None:
            self.fair.changed.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one message -----------------------------------------------------------------------

    async def _handle(self, msg: Msg, lane: Lane | None = None, probe: bool = False) -> None:
        assert self._outcomes is not None
        outcomes = self._outcomes
        slot = _SlotHold(self, lane, probe)
        held = -1  # the size of the answer held while its outcome is recorded, once there is one
        request: QueueRequest | None = None
        span: Scope | None = None
        try:
            self.progress.hold(msg)
            try:
                request = codec.decode(msg.data)
            except DecodeError as exc:
                slot.release()
                named = exc.function if isinstance(exc, codec.InvalidFunctionName) else ""
                await outcomes.undecodable(msg, str(exc), named)
                return
            if tracing.ENABLED:
                span = process_span(msg, request, self.subject, self.durable)
            reference = str((msg.headers or {}).get(BODY_OBJECT, ""))
            if self.ledger.is_cancelled(request):  # acked without a call, no callback
                slot.release()
                await outcomes.cancelled(msg, request, reference)
                return
            policy = self._policy(request)
            before = header_count(msg.headers, ATTEMPTS_BEFORE)
            if (expired := self.clock.expired(msg, request)) is not None:
                slot.release()
                attempts = before + (msg.metadata.num_delivered or 1)
                await outcomes.expired(msg, request, expired, attempts, policy, reference)
                return
            attempt = min(before + (msg.metadata.num_delivered or 1), policy.max_attempts)
            invocation = invocation_of(request)
            if reference:  # a claim check: the body is streamed from the object store
                try:
                    assert self._bodies is not None
                    body = await self._bodies.open(reference, msg.data)
                except BodyMissing as exc:
                    slot.release()
                    await outcomes.bodiless(msg, request, str(exc))
                    return
                invocation = dataclasses.replace(invocation, body=body)
            self.ledger.running(request, attempt)
            generation = slot.started(request)
            result = await self.invoker.invoke(invocation, attempt=attempt)
            if lane is not None:
                fate = lane.outcome(result, generation, header_count(msg.headers, RETURNS))
                if fate is not Fate.COUNTED:
                    slot.release()
                    assert self.fair is not None
                    self.ledger.retrying(request, result, 0.0)
                    await self.fair.send_back(msg, attempt - 1, limiter=fate is Fate.RETURNED)
                    return
            held = len(result.body)
            self.held.add(held)
            slot.release()
            self.metrics.duration.observe(result.duration, request.function)
            outcome = result.outcome(policy)
            log_attempt(request, result, outcome, self.config.gateway.print_response_body)
            if outcome.verdict is Verdict.RETRY and (
                stale := self.clock.expired(
                    msg, request, time.time() + outcome.delay, "not retried"
                )
            ):
                last = str(result.reported_status)
                await outcomes.expired(msg, request, stale, attempt, policy, reference, last)
                return
            if outcome.verdict is Verdict.RETRY:
                self.metrics.retries.inc(request.function)
                self.ledger.retrying(request, result, outcome.delay)
                await msg.nak(delay=outcome.delay)
                return
            await outcomes.final(msg, request, result, outcome, policy, reference)
        except asyncio.CancelledError:
            await hand_back(msg)
            raise
        except PublishError as exc:
            log.warning("could not record an outcome, handing the message back: %s", exc)
            await hand_back(msg, delay=HAND_BACK_DELAY_SECONDS)
        except (NatsError, TimeoutError) as exc:  # the broker's fault, not the message's
            log.warning("NATS failed on message %s, handing it back: %r", seq(msg), exc)
            await hand_back(msg, delay=HAND_BACK_DELAY_SECONDS)
        except Exception as exc:
            slot.release()
            policy = self._policy(request) if request is not None else self.policy
            await outcomes.unexpected(msg, request, exc, policy)
        finally:
            slot.release()
            if held >= 0:
                self.held.remove(held)
            self.progress.release(msg)
            if span is not None:
                span.end()

    def _policy(self, request: QueueRequest) -> RetryPolicy:
        return self.policy.for_function(request.annotations)

    # -- connection events and gauges --------------------------------------------------------

    async def _on_reconnect(self) -> None:
        if self._puller is not None:
            self._puller.forget_all()
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


class _SlotHold:
    """Releases a message's invocation slot (and its place in its lane) exactly once."""

    def __init__(self, worker: QueueWorker, lane: Lane | None, probe: bool = False) -> None:
        self.worker = worker
        self.lane = lane  # fair mode: it counts the message in flight since its delivery
        self.probe = probe  # the one call its function's half-open breaker let through
        self.held = True

    def started(self, request: QueueRequest) -> tuple[int, int]:
        """The call is sent: its lane learns the function; the limiter generation it runs in."""
        if self.lane is None:
            return 0, 0
        self.lane.learn(request.function, request.annotations)
        return self.lane.started()

    def release(self) -> None:
        if self.held:
            self.held = False
            if self.lane is not None:
                self.lane.finished(self.probe)
            self.worker.slots.release()
            self.worker._slot_freed()


def invocation_of(request: QueueRequest) -> InvocationRequest:
    """The HTTP call a queued request makes (the fuzz tests check what it builds)."""
    return InvocationRequest(
        function=request.function,
        body=request.body,
        method=request.method,
        path=request.path,
        query=request.query_string,
        headers=request.header_pairs(),
    )

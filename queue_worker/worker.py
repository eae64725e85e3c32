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
from collections.abc import Coroutine
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from connectors.core.callback import Callback, CallbackSender, result_headers
from connectors.core.drain import finish_or_cancel
from connectors.core.errors import DecodeError
from connectors.core.gateway import GatewayClient
from connectors.core.invoker import InvocationRequest, InvocationResult, Invoker
from connectors.core.retry import Outcome, RetryPolicy, Verdict
from connectors.core.slots import Slots
from connectors.core.supervision import raise_if_ended
from connectors.core.targets import shorten
from connectors.jetstream.connect import NatsConnection, connect
from queue_worker import codec, jetstream
from queue_worker.attempt_log import log_attempt
from queue_worker.codec import QueueRequest
from queue_worker.config import QueueWorkerConfig
from queue_worker.deadletter import DeadLetterWriter
from queue_worker.jetstream import PublishError
from queue_worker.large_bodies import BODY_OBJECT, BodyMissing, BodyStore
from queue_worker.layout import durable_name, queue_subject
from queue_worker.metrics import QueueWorkerMetrics
from queue_worker.prefetch import Prefetched, auto_prefetch
from queue_worker.progress import ProgressKeeper
from queue_worker.puller import Puller

log = logging.getLogger("ferry.queue_worker")

PENDING_REFRESH_SECONDS = 5.0
REQUEST_CHECK_SECONDS = 1.0  # re-check outstanding pull requests at least this often
HAND_BACK_DELAY_SECONDS = 5.0  # after a fault of ours (e.g. the dead-letter stream unwritable)
# Messages whose invocation is over but whose outcome is still being recorded (mostly: waiting
# on a callback) are held in memory and unacknowledged. Past this many per slot (at least 64),
# the worker takes no new messages until some are done, so a callback receiver that is down
# slows the worker instead of filling its memory.
FINISHING_PER_SLOT = 4
FINISHING_AT_LEAST = 64


class QueueWorker:
    name = "queue-worker"

    def __init__(self, config: QueueWorkerConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.metrics = QueueWorkerMetrics(self.registry, config.max_inflight)
        self.policy = RetryPolicy.from_settings(config.retry)
        self.gateway = GatewayClient(config.gateway, max_inflight=config.max_inflight)
        self.invoker = Invoker(self.gateway)
        self.callbacks = CallbackSender(
            config.callbacks, concurrency=max(16, min(config.max_inflight, 256))
        )
        self.slots = Slots(config.max_inflight)
        self.finishing_limit = max(FINISHING_AT_LEAST, FINISHING_PER_SLOT * config.max_inflight)
        self._finishing = 0
        self.metrics.finishing.set_function(lambda: self._finishing)
        self.progress = ProgressKeeper(config.ack_wait)
        prefetch = config.prefetch
        self.prefetched = Prefetched(
            auto_prefetch(config.max_inflight) if prefetch is None else prefetch, self.progress
        )
        self.metrics.prefetched.set_function(lambda: len(self.prefetched))
        self.subject = queue_subject(config.nats.nats_stream, config.queue_name)
        self.durable = config.nats_durable or durable_name(config.queue_name)
        self._nats: NatsConnection | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._puller: Puller | None = None
        self._dead: DeadLetterWriter | None = None
        self._bodies: BodyStore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._connected = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        nats = self.config.nats
        self._nats = await connect(
            nats,
            name=f"ferry-queue-worker-{self.durable}",
            on_disconnect=self._on_disconnect,
            on_reconnect=self._on_reconnect,
        )
        self._nc = self._nats.client
        self._connected = True
        self._js = self._nc.jetstream()
        await jetstream.ensure_streams(
            self._js,
            nats.nats_stream,
            nats.dead_letter_stream,
            replicas=nats.nats_stream_replicas,
        )
        await jetstream.ensure_consumer(
            self._js,
            nats.nats_stream,
            self.durable,
            self.subject,
            ack_wait=self.config.ack_wait,
        )
        self._puller = Puller(self._nc, nats.nats_stream, self.durable, self._deliver)
        await self._puller.start()
        self._dead = DeadLetterWriter(self._js, nats.dead_letter_stream)
        self._bodies = BodyStore(
            self._js,
            nats.large_body_bucket,
            ttl=nats.large_body_ttl,
            replicas=nats.nats_stream_replicas,
        )
        log.info(
            "serving %s (consumer %s) with max_inflight=%d, prefetch=%d via %s",
            self.subject,
            self.durable,
            self.config.max_inflight,
            self.prefetched.limit,
            self.config.gateway.gateway_url,
        )

    def ready(self) -> bool:
        return (
            self._nats is not None
            and self._nats.connected
            and self._puller is not None
            and not self._stopping.is_set()
        )

    def stop(self) -> None:
        self._stopping.set()
        for msg in self.prefetched.take_all():  # another replica may run them now
            self._spawn(self._hand_back(msg))
        if self._puller is not None:
            self._puller.poke()

    async def run(self) -> None:
        """Pull work until stopped; raise NatsLost if NATS closes the connection for good."""
        assert self._nats is not None
        await self._nats.while_open(self._pull())

    async def _pull(self) -> None:
        assert self._puller is not None
        refresher = asyncio.create_task(self._refresh_pending(), name="pending-gauges")
        self.progress.start()
        helpers = [refresher, *self.progress.tasks]
        puller = self._puller
        try:
            # One pass per event that may let the worker ask for more: a slot freed, a pull
            # request ended, the finishing count fell below its limit, a reconnect, stop. Woken
            # once or twice per message, so the pass itself makes no tasks.
            while not self._stopping.is_set():
                raise_if_ended(helpers)  # a helper that died ends the process (exit 1)
                puller.changed.clear()
                wanted = self.slots.free + self.prefetched.room - puller.outstanding
                if self._finishing >= self.finishing_limit:
                    wanted = 0
                if wanted > 0 and puller.can_request() and self._connected:
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
        if self._puller is not None:
            with contextlib.suppress(NatsError, TimeoutError):
                await self._puller.stop()
        await self.gateway.close()
        await self.callbacks.close()
        if self._nats is not None:
            await self._nats.close()

    # -- receiving --------------------------------------------------------------------------

    def _deliver(self, msg: Msg) -> None:
        """A message arrived for one of our pull requests: start it, keep it, or hand it back."""
        if self._stopping.is_set():
            self._spawn(self._hand_back(msg))
        elif self.slots.free > 0:
            self._start(msg)
        elif not self.prefetched.offer(msg):
            self._spawn(self._hand_back(msg))

    def _start(self, msg: Msg) -> None:
        self.slots.take()
        self.metrics.inflight.inc()
        self._spawn(self._handle(msg))

    def _slot_freed(self) -> None:
        """A waiting message takes the slot at once; otherwise the puller may ask for more."""
        if not self._stopping.is_set() and (msg := self.prefetched.take()) is not None:
            self._start(msg)
        elif self._puller is not None:
            self._puller.poke()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one message -----------------------------------------------------------------------

    async def _handle(self, msg: Msg) -> None:
        slot = _SlotHold(self)
        finishing = False
        request: QueueRequest | None = None
        try:
            self.progress.hold(msg)
            try:
                request = codec.decode(msg.data)
            except DecodeError as exc:
                slot.release()
                named = exc.function if isinstance(exc, codec.InvalidFunctionName) else ""
                await self._finish_undecodable(msg, str(exc), named)
                return
            policy = self._policy(request)
            attempt = min(msg.metadata.num_delivered or 1, policy.max_attempts)
            invocation = _invocation(request)
            reference = str((msg.headers or {}).get(BODY_OBJECT, ""))
            if reference:  # a claim check: the body is streamed from the object store
                try:
                    assert self._bodies is not None
                    body = await self._bodies.open(reference)
                except BodyMissing as exc:
                    slot.release()
                    await self._finish_bodiless(msg, request, str(exc))
                    return
                invocation = dataclasses.replace(invocation, body=body)
            result = await self.invoker.invoke(invocation, attempt=attempt)
            slot.release()
            self._finish_started()
            finishing = True
            self.metrics.duration.labels(request.function).observe(result.duration)
            outcome = result.outcome(policy)
            log_attempt(request, result, outcome, self.config.gateway.print_response_body)
            if outcome.verdict is Verdict.RETRY:
                self.metrics.retries.labels(request.function).inc()
                await msg.nak(delay=outcome.delay)
                return
            await self._finish(msg, request, result, outcome, policy, reference)
        except asyncio.CancelledError:
            await self._hand_back(msg)
            raise
        except PublishError as exc:
            log.warning("could not record an outcome, handing the message back: %s", exc)
            await self._hand_back(msg, delay=HAND_BACK_DELAY_SECONDS)
        except (NatsError, TimeoutError) as exc:  # the broker's fault, not the message's
            log.warning("NATS failed on message %s, handing it back: %r", _seq(msg), exc)
            await self._hand_back(msg, delay=HAND_BACK_DELAY_SECONDS)
        except Exception as exc:
            slot.release()
            await self._after_unexpected(msg, request, exc)
        finally:
            slot.release()
            if finishing:
                self._finish_ended()
            self.progress.release(msg)

    def _finish_started(self) -> None:
        self._finishing += 1
        if self._finishing == self.finishing_limit:
            log.warning(
                "%d results are waiting on their callbacks; taking no new messages until some "
                "are delivered",
                self._finishing,
            )

    def _finish_ended(self) -> None:
        self._finishing -= 1
        if self._finishing == self.finishing_limit - 1 and self._puller is not None:
            self._puller.poke()  # below the limit again: the worker may ask for more

    def _policy(self, request: QueueRequest) -> RetryPolicy:
        return self.policy.for_function(request.annotations)

    async def _finish(
        self,
        msg: Msg,
        request: QueueRequest,
        result: InvocationResult,
        outcome: Outcome,
        policy: RetryPolicy,
        reference: str = "",
    ) -> None:
        """Record a final outcome: dead letter if failed, then callback, then ack; then a
        body object is deleted, unless its dead letter keeps it."""
        assert self._dead is not None
        if outcome.verdict is Verdict.FAILED:
            await self._dead.write(
                msg,
                function=request.function,
                call_id=request.call_id,
                reason=outcome.reason,
                attempts=result.attempt,
                last_status=str(result.reported_status),
            )
            kind = "retries_exhausted" if outcome.exhausted else "not_retried"
            self.metrics.dead_letters.labels(request.function, kind).inc()
        if request.callback:
            await self._send_callback(request, result, policy.max_attempts)
        if not reference:
            await msg.ack()
        else:
            await msg.ack_sync(timeout=5.0)  # the body goes only once the call surely will not
            if outcome.verdict is not Verdict.FAILED:
                assert self._bodies is not None
                await self._bodies.delete(reference)
        self.metrics.processed.labels(request.function, str(result.reported_status)).inc()

    async def _finish_bodiless(self, msg: Msg, request: QueueRequest, reason: str) -> None:
        """A call whose body object is gone can never run: a dead letter at once."""
        assert self._dead is not None
        log.warning("%s call %s: dead-lettered: %s", request.function, request.call_id, reason)
        await self._dead.write(
            msg,
            function=request.function,
            call_id=request.call_id,
            reason=reason,
            attempts=msg.metadata.num_delivered or 1,
            last_status="",
        )
        self.metrics.dead_letters.labels(request.function, "not_retried").inc()
        await msg.ack_sync(timeout=5.0)

    async def _finish_undecodable(self, msg: Msg, reason: str, function: str) -> None:
        assert self._dead is not None
        log.warning("dead-lettering an undecodable message (seq %s): %s", _seq(msg), reason)
        await self._dead.write(
            msg,
            function=function,  # only an invalid name: the subject is then its hash
            call_id="",
            reason=f"undecodable: {reason}",
            attempts=msg.metadata.num_delivered or 1,
            last_status="",
        )
        self.metrics.dead_letters.labels("", "undecodable").inc()
        await msg.ack_sync(timeout=5.0)

    async def _after_unexpected(
        self, msg: Msg, request: QueueRequest | None, error: Exception
    ) -> None:
        """An error nobody foresaw counts as a failed attempt: the message is retried with
        back-off, and dead-lettered once its attempts are used up, so no message cycles for
        ever. One log line per message (when it is given up); each delivery's traceback goes
        to the debug log only."""
        assert self._dead is not None
        policy = self._policy(request) if request is not None else self.policy
        attempt = msg.metadata.num_delivered or 1
        reason = f"unexpected error: {type(error).__name__}: {shorten(str(error), 200)}"
        log.debug("message %s, attempt %d: %s", _seq(msg), attempt, reason, exc_info=error)
        outcome = policy.decide(status=None, attempt=attempt, error=reason)
        if outcome.verdict is Verdict.RETRY:
            await self._hand_back(msg, delay=outcome.delay)
            return
        function = request.function if request is not None else ""
        call_id = request.call_id if request is not None else ""
        log.error("%s call %s (message %s): %s", function, call_id, _seq(msg), outcome.reason)
        try:
            await self._dead.write(
                msg,
                function=function,
                call_id=call_id,
                reason=outcome.reason,
                attempts=attempt,
                last_status="",
            )
            self.metrics.dead_letters.labels(function, "unexpected").inc()
            await msg.ack_sync(timeout=5.0)
        except (PublishError, NatsError, TimeoutError) as exc:
            log.warning("could not dead-letter message %s, handing it back: %s", _seq(msg), exc)
            await self._hand_back(msg, delay=HAND_BACK_DELAY_SECONDS)

    async def _send_callback(
        self, request: QueueRequest, result: InvocationResult, retry_max: int
    ) -> None:
        headers = result_headers(
            result, call_id=request.call_id, start_time=request.start_time, retry_max=retry_max
        )
        callback = Callback(
            url=request.callback,
            body=result.body,
            headers=headers,
            call_id=request.call_id,
            function=request.function,
        )
        outcome = await self.callbacks.deliver(callback)
        self.metrics.callbacks.labels(outcome.value).inc()

    async def _hand_back(self, msg: Msg, delay: float | None = None) -> None:
        """Return a message unfinished (after `delay`, so a fault of ours is not a hot loop)."""
        with contextlib.suppress(NatsError, TimeoutError):
            await msg.nak(delay=delay)

    # -- connection events and gauges --------------------------------------------------------

    async def _on_disconnect(self) -> None:
        self._connected = False

    async def _on_reconnect(self) -> None:
        self._connected = True
        if self._puller is not None:
            self._puller.forget_all()
        self.metrics.reconnects.inc()

    async def _refresh_pending(self) -> None:
        assert self._js is not None
        while True:
            with contextlib.suppress(NatsError, TimeoutError):
                info = await self._js.consumer_info(self.config.nats.nats_stream, self.durable)
                self.metrics.pending.set(info.num_pending or 0)
                self.metrics.ack_pending.set(info.num_ack_pending or 0)
            await asyncio.sleep(PENDING_REFRESH_SECONDS)


class _SlotHold:
    """Releases a message's invocation slot exactly once."""

    def __init__(self, worker: QueueWorker) -> None:
        self.worker = worker
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.worker.slots.release()
            self.worker.metrics.inflight.dec()
            self.worker._slot_freed()


def _invocation(request: QueueRequest) -> InvocationRequest:
    return InvocationRequest(
        function=request.function,
        body=request.body,
        method=request.method,
        path=request.path,
        query=request.query_string,
        headers=request.header_pairs(),
    )


def _seq(msg: Msg) -> int | None:
    return msg.metadata.sequence.stream if msg.metadata.sequence else None

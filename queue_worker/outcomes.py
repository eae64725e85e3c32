"""What the queue worker does with a message once its fate is known: dead letter, callback,
ack, and the large body's object; or, for a fault of ours, hand it back to JetStream.

Kept apart from the worker's pulling and scheduling (`static_mode.py`, `fair_mode.py`) and
from the call itself (`handler.py`): this half only records outcomes, in the one order that
loses nothing (dead letter, then callback, then ack, then the body object), so a crash
between two steps repeats a step rather than skipping one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from asyncq.codec import QueueRequest
from asyncq.deadletter import DeadLetterWriter
from asyncq.jetstream import PublishError
from asyncq.large_bodies import BodyStore
from connectors.core import tracing
from connectors.core.callback import Callback, CallbackSender, result_headers
from connectors.core.invoker import InvocationResult
from connectors.core.retry import Outcome, RetryPolicy, Verdict
from connectors.core.targets import short_id, shorten
from queue_worker.delivery_numbers import delivered, stream_seq
from queue_worker.metrics import QueueWorkerMetrics
from queue_worker.process_span import cancelled_outcome, note, unexpected_outcome
from queue_worker.worker_ledger import WorkerLedger

log = logging.getLogger("ferry.queue_worker")

HAND_BACK_DELAY_SECONDS = 5.0  # after a fault of ours (e.g. the dead-letter stream unwritable)
EXPIRED_STATUS = 410  # what a callback says of a call that expired before it could run


class OutcomeRecorder:
    def __init__(
        self,
        dead: DeadLetterWriter,
        bodies: BodyStore,
        callbacks: CallbackSender,
        metrics: QueueWorkerMetrics,
        ledger: WorkerLedger,
        expired_count: Callable[[str], None] = lambda function: None,
    ) -> None:
        self.expired_count = expired_count
        self.dead = dead
        self.bodies = bodies
        self.callbacks = callbacks
        self.metrics = metrics
        self.ledger = ledger

    async def final(
        self,
        msg: Msg,
        request: QueueRequest,
        result: InvocationResult,
        outcome: Outcome,
        policy: RetryPolicy,
        reference: str = "",
    ) -> None:
        """Record a final outcome: dead letter if failed, then callback, then ack; then a
        body object is deleted, unless its dead letter keeps it. The call ledger hears of it
        first (never awaited), and of the callback's outcome once it is known."""
        succeeded = outcome.verdict is not Verdict.FAILED
        self.ledger.finished(request, result, succeeded=succeeded)
        if not succeeded:
            await self._dead_letter(
                msg,
                request.function,
                request.call_id,
                outcome.reason,
                result.attempt,
                kind="retries_exhausted" if outcome.exhausted else "not_retried",
                last_status=str(result.reported_status),
            )
        if request.callback:
            delivered = await self.callback(request, result, policy.max_attempts)
            self.ledger.finished(request, result, succeeded=succeeded, callback_outcome=delivered)
        await self._ack(msg, reference, delete_body=succeeded)
        self.metrics.processed.inc(request.function, str(result.reported_status))

    async def bodiless(self, msg: Msg, request: QueueRequest, reason: str) -> None:
        """A call whose body object is gone can never run: a dead letter at once."""
        log.warning(
            "%s call %s: dead-lettered: %s", request.function, short_id(request.call_id), reason
        )
        attempts = delivered(msg)
        self.ledger.gave_up(request, attempts, reason)
        await self._dead_letter(
            msg, request.function, request.call_id, reason, attempts, kind="not_retried"
        )
        await msg.ack_sync(timeout=5.0)

    async def undecodable(self, msg: Msg, reason: str, function: str) -> None:
        log.warning("dead-lettering an undecodable message (seq %s): %s", stream_seq(msg), reason)
        await self._dead_letter(
            msg,
            function,  # only an invalid name: the subject is then its hash
            "",
            f"undecodable: {reason}",
            delivered(msg),
            kind="undecodable",
            label="",  # an invalid name is not a metric label
        )
        await msg.ack_sync(timeout=5.0)

    async def unexpected(
        self, msg: Msg, request: QueueRequest | None, error: Exception, policy: RetryPolicy
    ) -> None:
        """An error nobody foresaw counts as a failed attempt: the message is retried with
        back-off, and dead-lettered once its attempts are used up, so no message cycles for
        ever. One log line per message (when it is given up); each delivery's traceback goes
        to the debug log only."""
        attempt = delivered(msg)
        reason = f"unexpected error: {type(error).__name__}: {shorten(str(error), 200)}"
        log.debug("message %s, attempt %d: %s", stream_seq(msg), attempt, reason, exc_info=error)
        outcome = policy.decide(status=None, attempt=attempt, error=reason)
        if tracing.ENABLED:
            unexpected_outcome(outcome, reason)
        if outcome.verdict is Verdict.RETRY:
            await hand_back(msg, delay=outcome.delay)
            return
        function = request.function if request is not None else ""
        call_id = request.call_id if request is not None else ""
        log.error(
            "%s call %s (message %s): %s",
            function,
            short_id(call_id),
            stream_seq(msg),
            outcome.reason,
        )
        try:
            await self._dead_letter(
                msg, function, call_id, outcome.reason, attempt, kind="unexpected"
            )
            if request is not None:
                self.ledger.gave_up(request, attempt, outcome.reason)
            await msg.ack_sync(timeout=5.0)
        except (PublishError, NatsError, TimeoutError) as exc:
            log.warning(
                "could not dead-letter message %s, handing it back: %s", stream_seq(msg), exc
            )
            await hand_back(msg, delay=HAND_BACK_DELAY_SECONDS)

    async def expired(
        self,
        msg: Msg,
        request: QueueRequest,
        reason: str,
        attempts: int,
        policy: RetryPolicy,
        reference: str,
        last_status: str = "",
    ) -> None:
        """A call past its expiry (`queue_worker.expiry`): dead letter `expired`, then the
        callback once with status 410 and the reason in X-Ferry-Error, then ack; no invocation.
        The dead letter keeps a body object."""
        self.ledger.expired(request, attempts, reason)
        await self._dead_letter(
            msg,
            request.function,
            request.call_id,
            reason,
            attempts,
            kind="expired",
            last_status=last_status,
        )
        if request.callback:
            gone = InvocationResult(
                request.function, EXPIRED_STATUS, attempts, 0.0, error=reason, final=True
            )
            await self.callback(request, gone, policy.max_attempts)
        await self._ack(msg, reference, delete_body=False)
        self.metrics.processed.inc(request.function, str(EXPIRED_STATUS))
        self.expired_count(request.function)

    async def cancelled(self, msg: Msg, request: QueueRequest, reference: str) -> None:
        """A call cancelled through the ledger: acked without a call, no callback, no dead
        letter; its body object, if any, is deleted."""
        if tracing.ENABLED:
            cancelled_outcome()
        self.ledger.skipped(request)
        await self._ack(msg, reference, delete_body=True)

    async def _dead_letter(
        self,
        msg: Msg,
        function: str,
        call_id: str,
        reason: str,
        attempts: int,
        *,
        kind: str,
        last_status: str = "",
        label: str | None = None,
    ) -> None:
        """Write the dead letter (PublishError if it was not stored) and count it by `kind`."""
        if tracing.ENABLED:
            note("ferry.dead_letter", **{"ferry.reason": reason, "ferry.dead_letter.kind": kind})
        await self.dead.write(
            msg,
            function=function,
            call_id=call_id,
            reason=reason,
            attempts=attempts,
            last_status=last_status,
        )
        self.metrics.dead_letters.labels(function if label is None else label, kind).inc()

    async def _ack(self, msg: Msg, reference: str, *, delete_body: bool) -> None:
        """Acknowledge; with a body object, surely (the body goes only once the message will
        not come back), then delete the body if it is no longer wanted."""
        if not reference:
            await msg.ack()
            return
        await msg.ack_sync(timeout=5.0)
        if delete_body:
            await self.bodies.delete(reference, msg.data)  # only if the call owns it

    async def callback(
        self, request: QueueRequest, result: InvocationResult, retry_max: int
    ) -> str:
        """Deliver the callback; its outcome (delivered, rejected, failed, refused)."""
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
        self.metrics.callbacks.inc(outcome.value)
        return outcome.value


async def hand_back(msg: Msg, delay: float | None = None) -> None:
    """Return a message unfinished (after `delay`, so a fault of ours is not a hot loop)."""
    if tracing.ENABLED:
        note("ferry.handed_back")
    with contextlib.suppress(NatsError, TimeoutError):
        await msg.nak(delay=delay)

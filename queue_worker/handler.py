"""One delivered message, from decoding to its outcome recorded on the broker.

Per message: decode (or dead-letter), invoke through the gateway while telling JetStream the
message is in progress, then map the outcome onto the broker: `nak(delay)` for a retry, or for a
final outcome (success, non-retried error, retries exhausted) dead-letter if it failed, deliver
the callback, and only then `ack`. The invocation slot is freed as soon as the function answers,
so a slow callback receiver never blocks invocations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from asyncq import codec
from asyncq.codec import QueueRequest
from asyncq.jetstream import PublishError
from asyncq.large_bodies import BODY_OBJECT, BodyMissing, BodyStore
from connectors.core import tracing
from connectors.core.errors import DecodeError
from connectors.core.invoker import InvocationRequest, Invoker
from connectors.core.retry import RetryPolicy, Verdict
from connectors.core.slots import Slots
from queue_worker import decoded
from queue_worker.attempt_log import log_attempt
from queue_worker.config import QueueWorkerConfig
from queue_worker.delivery_numbers import delivered, stream_seq
from queue_worker.expiry import CallClock
from queue_worker.held_answers import HeldAnswers
from queue_worker.lanes import ATTEMPTS_BEFORE, RETURNS, Fate, Lane, header_count
from queue_worker.metrics import QueueWorkerMetrics
from queue_worker.outcomes import HAND_BACK_DELAY_SECONDS, OutcomeRecorder, hand_back
from queue_worker.process_span import process_span
from queue_worker.progress import ProgressKeeper
from queue_worker.worker_ledger import WorkerLedger

if TYPE_CHECKING:
    from connectors.core.spans import Scope

log = logging.getLogger("ferry.queue_worker")


class SendBack(Protocol):
    """Fair mode's way back to a lane for a call that used no attempt (`FairMode.send_back`)."""

    def __call__(
        self, msg: Msg, attempts_used: int, subject: str, *, limiter: bool = True
    ) -> Awaitable[None]: ...


class MessageHandler:
    """Handles each message a receiving path (static or fair) started, in a task of its own.

    The receiving path sets `slot_freed` (who takes a freed slot is its business) and, in fair
    mode, `send_back`."""

    slot_freed: Callable[[], None]

    def __init__(
        self,
        config: QueueWorkerConfig,
        *,
        invoker: Invoker,
        outcomes: OutcomeRecorder,
        bodies: BodyStore,
        ledger: WorkerLedger,
        clock: CallClock,
        progress: ProgressKeeper,
        held: HeldAnswers,
        metrics: QueueWorkerMetrics,
        policy: RetryPolicy,
        slots: Slots,
        subject: str,
        durable: str,
    ) -> None:
        self.config = config
        self.invoker = invoker
        self._outcomes = outcomes
        self._bodies = bodies
        self.ledger = ledger
        self.clock = clock
        self.progress = progress
        self.held = held
        self.metrics = metrics
        self.policy = policy
        self.slots = slots
        self.subject = subject
        self.durable = durable
        self.send_back: SendBack | None = None

    async def handle(self, msg: Msg, lane: Lane | None = None, probe: bool = False) -> None:
        outcomes = self._outcomes
        slot = SlotHold(self, lane, probe, lane is not None and msg.subject != lane.subject)
        held = -1  # the size of the answer held while its outcome is recorded, once there is one
        request: QueueRequest | None = None
        span: Scope | None = None
        try:
            self.progress.hold(msg)
            try:
                request = decoded.take(msg) or codec.decode(msg.data)
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
                attempts = before + delivered(msg)
                await outcomes.expired(msg, request, expired, attempts, policy, reference)
                return
            attempt = min(before + delivered(msg), policy.max_attempts)
            invocation = invocation_of(request)
            if reference:  # a claim check: the body is streamed from the object store
                try:
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
                    assert self.send_back is not None
                    self.ledger.retrying(request, result, 0.0)
                    returned = fate is Fate.RETURNED
                    await self.send_back(msg, attempt - 1, lane.subject, limiter=returned)
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
            log.warning("NATS failed on message %s, handing it back: %r", stream_seq(msg), exc)
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


class SlotHold:
    """Releases a message's invocation slot (and its place in its lane) exactly once."""

    def __init__(
        self, calls: MessageHandler, lane: Lane | None, probe: bool = False, plain: bool = False
    ) -> None:
        self.calls = calls
        self.lane = lane  # fair mode: it counts the message in flight since its delivery
        self.probe = probe  # the one call its function's half-open breaker let through
        self.plain = plain  # fair mode: a call its lane held from the plain subject
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
                self.lane.finished(self.probe, self.plain)
            self.calls.slots.release()
            self.calls.slot_freed()


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

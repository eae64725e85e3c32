"""What happens to one received SQS message, from invocation to deletion or hand-back.

Retries go through SQS itself: a retryable failure sets the message's visibility to the
back-off delay and the next receive is the next attempt (`ApproximateReceiveCount`), so
retries survive restarts. Functions that already reached a final outcome for a message are
remembered in this process, so a retry of one subscriber does not re-invoke the others.
A message is deleted only when every matched function is final and none failed; a failed one
goes to the queue's redrive policy, to `dead_letter_queue_url`, or stays in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from connectors.core import tracing
from connectors.core.connector_metrics import ConnectorMetrics
from connectors.core.controller import Controller
from connectors.core.delivery import Delivery, Event, unexpected_error
from connectors.core.invoker import InvocationResult
from connectors.core.retry import Outcome, Verdict
from connectors.core.staleness import expired_deliveries, staleness
from connectors.core.supervision import cancel_and_wait
from connectors.core.topicmap import FunctionInfo
from connectors.sqs.client import SqsClient, SqsError
from connectors.sqs.deadletter import DEFAULT_MAX_MESSAGE_BYTES, send_dead_letter
from connectors.sqs.deleter import BatchDeleter
from connectors.sqs.message import SqsMessage, message_span
from connectors.sqs.metrics import SqsMetrics

log = logging.getLogger("ferry.sqs")

REMEMBERED_MESSAGES = 10_000
HAND_BACK_TIMEOUT = 5.0


@dataclass
class QueueState:
    """A consumed queue and what was learned about it at start."""

    url: str
    name: str
    fifo: bool = False
    redrive: bool = False
    busy: bool = False  # its last receive returned messages: ask for up to max_messages
    deleter: BatchDeleter | None = field(default=None, repr=False)


class MessageHandler:
    def __init__(
        self,
        *,
        client: SqsClient,
        controller: Controller,
        metrics: ConnectorMetrics,
        sqs_metrics: SqsMetrics,
        visibility_timeout: int,
        dead_letter_queue_url: str,
        max_event_age: float = 0.0,
    ) -> None:
        self.max_event_age = max_event_age
        self.client = client
        self.controller = controller
        self.metrics = metrics
        self.sqs_metrics = sqs_metrics
        self.visibility_timeout = visibility_timeout
        self.dead_letter_queue_url = dead_letter_queue_url
        self.dead_letter_limit = DEFAULT_MAX_MESSAGE_BYTES  # the queue's own, read at start
        self._settled: OrderedDict[str, dict[str, Delivery]] = OrderedDict()

    async def handle(self, queue: QueueState, message: SqsMessage) -> bool:
        """Process one message; True when it was deleted (finished), else it went back."""
        self.metrics.received.inc(queue.name)
        span = message_span(queue.name, message) if tracing.ENABLED else None
        try:
            return await self._handle(queue, message)
        except asyncio.CancelledError:
            await self.hand_back(queue, message)
            raise
        except Exception as exc:
            return await self._failed_unexpectedly(queue, message, exc)
        finally:
            if span is not None:
                span.end()

    async def _failed_unexpectedly(
        self, queue: QueueState, message: SqsMessage, exc: Exception
    ) -> bool:
        """An error nothing foresaw is a failed attempt like any other: the message comes back
        after the back-off (not at once, which would spin on it, or block its FIFO group
        for good), and once the attempts are spent it is given up on with the reason."""
        error = unexpected_error(exc)
        attempt = message.receive_count
        outcome = self.controller.policy.decide(status=None, attempt=attempt, error=error)
        log.error("message %s: %s (receive %d)", message.message_id, error, attempt, exc_info=exc)
        try:
            if not outcome.final:
                await self._retry_later(queue, message, outcome.delay)
                return False
            event = Event(topic=queue.name, body=b"", call_id=message.message_id)
            result = InvocationResult(function="", status=None, attempt=attempt, duration=0.0)
            functions = self.controller.match(queue.name) or (FunctionInfo("-"),)
            failed = [Delivery(event, fn, result, outcome) for fn in functions]
            return await self._give_up(queue, message, failed, newly=failed)
        except Exception:
            log.exception("message %s: handing it back", message.message_id)
            await self.hand_back(queue, message)
            return False

    async def _handle(self, queue: QueueState, message: SqsMessage) -> bool:
        functions = self.controller.match(queue.name)
        if not functions:
            # Nothing subscribes: delete it and count it, so it is never dropped silently
            # and never blocks a FIFO group forever.
            self.metrics.unmatched.inc(queue.name)
            log.warning(
                "no function subscribes to %s: deleting message %s (counted as unmatched)",
                queue.name,
                message.message_id,
            )
            return await self._delete(queue, message)
        settled = self._remember(message.message_id)
        pending = [fn for fn in functions if fn.qualified not in settled]
        event = Event(
            topic=queue.name,
            body=message.body.encode("utf-8"),
            headers=message.headers(),
            call_id=message.message_id,
        )
        stale = staleness(self.max_event_age, message.sent_at, time.time())
        if stale is not None:  # no function is invoked: each gets a failed delivery
            expired = list(expired_deliveries(self.controller, event, pending, stale))
            for delivery in expired:
                settled[delivery.function.qualified] = delivery
            failed = [d for d in settled.values() if not d.ok]
            if not failed:  # every function had succeeded before: only the delete was left
                self._settled.pop(message.message_id, None)
                return await self._delete(queue, message)
            return await self._give_up(queue, message, failed, newly=expired)
        async with self.kept_invisible(queue, message):
            deliveries = await asyncio.gather(
                *(self._attempt(event, message, fn) for fn in pending)
            )
        retries = [d for d in deliveries if not d.outcome.final]
        for delivery in deliveries:
            if delivery.outcome.final:
                settled[delivery.function.qualified] = delivery
                self.controller.finished(delivery)
        if retries:
            delay = max(d.outcome.delay for d in retries)
            await self._retry_later(queue, message, delay)
            return False
        failed = [d for d in settled.values() if not d.ok]
        if not failed:
            self._settled.pop(message.message_id, None)
            return await self._delete(queue, message)
        return await self._give_up(queue, message, failed, newly=deliveries)

    async def _attempt(self, event: Event, message: SqsMessage, fn: FunctionInfo) -> Delivery:
        attempts = self.controller.policy_for(fn).max_attempts
        if message.receive_count > attempts:
            # Already tried as often as allowed (e.g. before a restart): do not invoke again.
            reason = f"received {message.receive_count} times, over {attempts} attempts"
            result = InvocationResult(
                function=fn.qualified, status=None, attempt=message.receive_count, duration=0.0
            )
            return Delivery(
                event, fn, result, Outcome(Verdict.FAILED, reason=reason, exhausted=True)
            )
        return await self.controller.attempt(event, fn, message.receive_count)

    def _remember(self, message_id: str) -> dict[str, Delivery]:
        settled = self._settled.setdefault(message_id, {})
        self._settled.move_to_end(message_id)
        while len(self._settled) > REMEMBERED_MESSAGES:
            self._settled.popitem(last=False)
        return settled

    @contextlib.asynccontextmanager
    async def kept_invisible(self, queue: QueueState, message: SqsMessage) -> AsyncIterator[None]:
        """The message's visibility extended for as long as the block runs (its calls, or
        its wait for the one before it in its FIFO group), so no one else receives it."""
        keeper = asyncio.create_task(self._keep_invisible(queue, message))
        try:
            yield
        finally:
            await cancel_and_wait(keeper)

    async def _keep_invisible(self, queue: QueueState, message: SqsMessage) -> None:
        """Heartbeat: extend the visibility while calls run, so no one else receives it."""
        interval = max(self.visibility_timeout / 2, 0.5)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.client.change_visibility(
                    queue.url, message.receipt, self.visibility_timeout
                )
                self.sqs_metrics.visibility_extensions.labels(queue.name).inc()
            except SqsError as exc:
                log.warning("could not extend visibility of %s: %s", message.message_id, exc)

    async def _retry_later(self, queue: QueueState, message: SqsMessage, delay: float) -> None:
        seconds = min(max(math.ceil(delay), 0), 12 * 3600)
        try:
            await self.client.change_visibility(queue.url, message.receipt, seconds)
        except SqsError as exc:
            # It still comes back when its current visibility runs out: later, not lost.
            log.warning("could not schedule the retry of %s: %s", message.message_id, exc)

    async def _give_up(
        self,
        queue: QueueState,
        message: SqsMessage,
        failed: list[Delivery],
        newly: list[Delivery],
    ) -> bool:
        first_time = any(any(d is n for n in newly) for d in failed)
        first = failed[0]
        names = ",".join(d.function.qualified for d in failed)
        if queue.redrive:
            if first_time:
                for d in failed:
                    self.metrics.dead_letters.labels(d.function.qualified, "redrive").inc()
                log.error(
                    "message %s failed for %s: left to the redrive policy of %s",
                    message.message_id,
                    names,
                    queue.name,
                )
            await self._retry_later(queue, message, 0)
            return False
        if self.dead_letter_queue_url:
            try:
                await send_dead_letter(
                    self.client,
                    self.dead_letter_queue_url,
                    message,
                    function=names,
                    reason=first.outcome.reason,
                    attempts=first.result.attempt,
                    last_status=str(first.result.reported_status),
                    limit=self.dead_letter_limit,
                )
            except SqsError as exc:
                log.error("could not dead-letter %s, keeping it: %s", message.message_id, exc)
                return False
            for d in failed:
                self.metrics.dead_letters.labels(d.function.qualified, "dead_letter_queue").inc()
            self._settled.pop(message.message_id, None)
            return await self._delete(queue, message)
        if first_time:
            for d in failed:
                self.metrics.dead_letters.labels(d.function.qualified, "kept").inc()
            log.error(
                "message %s failed for %s and there is no dead-letter destination: kept in %s",
                message.message_id,
                names,
                queue.name,
            )
        return False

    async def _delete(self, queue: QueueState, message: SqsMessage) -> bool:
        assert queue.deleter is not None
        deleted = await queue.deleter.delete(message.message_id, message.receipt)
        if deleted:
            self.sqs_metrics.deleted.labels(queue.name).inc()
        return deleted

    async def hand_back(self, queue: QueueState, message: SqsMessage) -> None:
        """Make a message visible again at once (drain, or an order that cannot be kept)."""
        with contextlib.suppress(SqsError, TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(self.client.change_visibility(queue.url, message.receipt, 0)),
                HAND_BACK_TIMEOUT,
            )
            self.sqs_metrics.handed_back.labels(queue.name).inc()

"""`ferry sqs-connector`: long-poll SQS queues and invoke the functions subscribed to them.

Each queue has its own poll loop; all share one pool of slots, and a loop asks SQS only for as
many messages as there are free slots, so nothing sits received but unworked while its
visibility runs out. When free slots are too few for every queue to ask for `max_messages`, a
queue whose last receive was empty (or that has not been read yet) asks for one: its long poll
holds one slot, and the others stay free for busy queues. A message waiting for its
function's limit gives its slot to others meanwhile (at most `max_inflight` such messages, its
visibility extended as it waits). FIFO queues keep order per `MessageGroupId`: a message waits
for the one before it in its group (aside, its slot given to others meanwhile), and if that
one did not finish, it is handed back unprocessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry

from connectors.core.aside import StepAside
from connectors.core.controller import Controller
from connectors.core.drain import finish_or_cancel
from connectors.core.errors import StartupError
from connectors.core.slots import Slots
from connectors.core.supervision import cancel_and_wait, until_stopped
from connectors.sqs.client import SqsClient, SqsError, region_from_url
from connectors.sqs.config import SqsConnectorConfig
from connectors.sqs.deadletter import max_message_size
from connectors.sqs.deleter import BatchDeleter
from connectors.sqs.handler import MessageHandler, QueueState
from connectors.sqs.message import SqsMessage, queue_name
from connectors.sqs.metrics import SqsMetrics

log = logging.getLogger("ferry.sqs")

CONNECTOR = "sqs-connector"
RECEIVE_BACKOFF_FIRST = 1.0
RECEIVE_BACKOFF_MAX = 30.0
POLLER_STOP_WAIT = 2.0


class SqsConnector:
    name = CONNECTOR

    def __init__(self, config: SqsConnectorConfig) -> None:
        self.config = config
        sqs = config.sqs
        self.registry = CollectorRegistry()
        self.controller = Controller.build(CONNECTOR, config, self.registry)
        self.metrics = self.controller.metrics
        self.gateway = self.controller.gateway
        self.topics = self.controller.topics
        self.sqs_metrics = SqsMetrics(self.registry)
        self.client = SqsClient(
            endpoint_url=sqs.endpoint_url,
            region=sqs.aws_region or region_from_url(sqs.queue_url[0]),
            connect_timeout=sqs.sqs_connect_timeout,
            read_timeout=sqs.wait_time + 10.0,
            pool_size=config.connector.max_inflight + 2 * len(sqs.queue_url) + 4,
        )
        self.handler = MessageHandler(
            client=self.client,
            controller=self.controller,
            metrics=self.metrics,
            sqs_metrics=self.sqs_metrics,
            visibility_timeout=sqs.visibility_timeout,
            dead_letter_queue_url=sqs.dead_letter_queue_url,
            max_event_age=sqs.max_event_age,
        )
        self.slots = Slots(config.connector.max_inflight)
        # a message waiting for its function's limit gives its slot to another meanwhile; at
        # most max_inflight wait so, so no more than twice that are ever received at once
        self.aside = StepAside(
            self.slots.release, self.slots.take_back, most=config.connector.max_inflight
        )
        self.controller.step_aside = self.aside.step
        self.queues = [QueueState(url, queue_name(url)) for url in sqs.queue_url]
        self._tasks: set[asyncio.Task[bool]] = set()
        self._group_tails: dict[tuple[str, str], asyncio.Task[bool]] = {}
        self._pollers: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        sqs = self.config.sqs
        bound = sqs.sqs_connect_timeout * 2 + 1
        try:
            await self.client.open()
            for queue in self.queues:
                attributes = await asyncio.wait_for(self.client.attributes(queue.url), bound)
                queue.fifo = attributes.get("FifoQueue", "").lower() == "true"
                queue.redrive = bool(attributes.get("RedrivePolicy"))
                queue.deleter = BatchDeleter(self.client, queue.url)
            if sqs.dead_letter_queue_url:
                dead = await asyncio.wait_for(
                    self.client.attributes(sqs.dead_letter_queue_url), bound
                )
                self.handler.dead_letter_limit = max_message_size(dead)
        except (SqsError, TimeoutError) as exc:
            await self.client.close()
            detail = str(exc) or f"no answer within {bound:g}s"
            where = sqs.endpoint_url or "AWS"
            raise StartupError(f"cannot use SQS at {where}: {detail}") from None
        await self.topics.refresh()
        for queue in self.queues:
            log.info(
                "consuming %s (%s%s) with max_inflight=%d via %s",
                queue.url,
                "fifo" if queue.fifo else "standard",
                ", redrive policy" if queue.redrive else "",
                self.config.connector.max_inflight,
                self.config.gateway.gateway_url,
            )
        self._started = True

    def ready(self) -> bool:
        return self._started and self.topics.rebuilt_once and not self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Poll every queue until stopped; a poller or the topic-map refresher that dies
        makes this raise (`TaskDied`), so the process exits 1 instead of going quiet."""
        refresher = asyncio.create_task(self.topics.run(), name="topic-map")
        self._pollers = [
            asyncio.create_task(self._poll(q), name=f"poll {q.name}") for q in self.queues
        ]
        try:
            await until_stopped(self._stopping, [refresher, *self._pollers])
        finally:
            await cancel_and_wait(refresher)

    async def drain(self, timeout: float) -> None:
        """Finish in-flight messages within `timeout`; make the rest visible again."""
        self._stopping.set()
        if self._pollers:
            await asyncio.wait(self._pollers, timeout=POLLER_STOP_WAIT)
            # a poller still in a long poll is cancelled: its messages come back later
            await cancel_and_wait(*self._pollers)
        if self._tasks:
            log.info("waiting for %d in-flight messages", len(self._tasks))
            if cancelled := await finish_or_cancel(self._tasks, timeout):
                log.warning("made %d unfinished messages visible again", cancelled)
        await self.gateway.close()
        await self.client.close()

    # -- receiving -------------------------------------------------------------------------

    async def _poll(self, queue: QueueState) -> None:
        sqs = self.config.sqs
        backoff = RECEIVE_BACKOFF_FIRST
        while not self._stopping.is_set():
            if not self.topics.rebuilt_once:
                # Without a topic map every message would look unmatched: wait for one.
                await self._pause(0.5)
                continue
            if not await self.slots.wait_free_unless(self._stopping):
                return
            # another queue's loop, or a message back from waiting aside, may have taken
            # slots since the wait ended
            count = min(self.slots.free, self._asked(queue))
            if count <= 0:
                continue
            self.slots.take(count)
            try:
                raw = await self.client.receive(
                    queue.url, count, sqs.wait_time, sqs.visibility_timeout
                )
            except SqsError as exc:
                self.slots.release(count)
                self.sqs_metrics.receive_errors.labels(queue.name).inc()
                log.warning("receive from %s failed, retrying in %gs: %s", queue.name, backoff, exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, RECEIVE_BACKOFF_MAX)
                continue
            except BaseException:
                self.slots.release(count)
                raise
            backoff = RECEIVE_BACKOFF_FIRST
            queue.busy = bool(raw)
            self.slots.release(count - len(raw))
            for item in raw:
                self._start(queue, SqsMessage.from_response(queue.url, item))

    def _asked(self, queue: QueueState) -> int:
        """How many messages a receive from `queue` asks for (before the free slots cap it):
        `max_messages`, unless its last receive came back empty and the free slots are too few
        for every queue to ask as much; then one, so an idle queue's long poll holds one slot
        for `wait_time`, not the ones a busy queue needs."""
        most = self.config.sqs.max_messages
        if queue.busy or self.slots.free >= most * len(self.queues):
            return most
        return 1

    def _start(self, queue: QueueState, message: SqsMessage) -> None:
        previous = None
        key = (queue.url, message.group_id)
        if queue.fifo and message.group_id:
            previous = self._group_tails.get(key)
        task = asyncio.create_task(self._run_one(queue, message, previous))
        if queue.fifo and message.group_id:
            self._group_tails[key] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._finished(t, key))

    def _finished(self, task: asyncio.Task[bool], key: tuple[str, str]) -> None:
        self._tasks.discard(task)
        self.slots.release()
        if self._group_tails.get(key) is task:
            del self._group_tails[key]

    async def _run_one(
        self, queue: QueueState, message: SqsMessage, previous: asyncio.Task[bool] | None
    ) -> bool:
        self.aside.begin()
        if previous is not None:
            try:
                # its slot is another message's meanwhile: a slow group must not hold one
                # slot per message it was handed (up to `max_messages`) while one runs; and it
                # stays invisible, or SQS hands it out again once the group frees up
                async with self.aside.step(), self.handler.kept_invisible(queue, message):
                    finished = await asyncio.shield(previous)
            except asyncio.CancelledError:
                await self.handler.hand_back(queue, message)
                raise
            except Exception:
                finished = False
            if not finished:
                # The one before it in the group is coming back: keep the order.
                await self.handler.hand_back(queue, message)
                return False
        if self._stopping.is_set():
            # received while stopping (or waiting behind its group): not started, so back
            await self.handler.hand_back(queue, message)
            return False
        return await self.handler.handle(queue, message)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

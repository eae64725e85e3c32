"""Publishes each function's response to `response_topic` without slowing invocations.

`ResponseTopic.response` only queues (bounded); a background task produces. When the queue is
full or the broker refuses, the response is dropped and counted: responses are a by-product,
the record's own outcome and commit never wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from connectors.core.delivery import Delivery
from connectors.core.supervision import cancel_and_wait
from connectors.kafka.metrics import KafkaMetrics
from connectors.kafka.records import source_of

log = logging.getLogger("ferry.kafka")

QUEUE_SIZE = 10_000


def response_headers(delivery: Delivery) -> list[tuple[str, bytes]]:
    topic, partition, offset = source_of(delivery.event)
    return [
        ("X-Function-Name", delivery.function.qualified.encode()),
        ("X-Function-Status", str(delivery.result.reported_status).encode()),
        ("X-Kafka-Topic", topic.encode()),
        ("X-Kafka-Partition", partition.encode()),
        ("X-Kafka-Offset", offset.encode()),
        ("X-Call-Id", delivery.event.call_id.encode()),
    ]


class ResponseTopic:
    """A `ResponseSubscriber` that produces to a topic from its own task."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, metrics: KafkaMetrics) -> None:
        self.producer = producer
        self.topic = topic
        self.metrics = metrics
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._publish(), name="response-topic")

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The long-lived task to watch (it ends only when `close` cancels it)."""
        return [self._task] if self._task is not None else []

    def response(self, delivery: Delivery) -> None:
        try:
            self._queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.metrics.responses_dropped.inc()

    async def close(self, timeout: float) -> None:
        """Publish what is queued within `timeout`, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        await cancel_and_wait(self._task)

    async def _publish(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                sent = await self.producer.send(
                    self.topic, delivery.result.body, headers=response_headers(delivery)
                )
                sent.add_done_callback(self._confirmed)
            except KafkaError as exc:
                self._dropped(exc)
            finally:
                self._queue.task_done()

    def _confirmed(self, sent: asyncio.Future[object]) -> None:
        if not sent.cancelled() and sent.exception() is not None:
            self._dropped(sent.exception())

    def _dropped(self, exc: BaseException | None) -> None:
        self.metrics.responses_dropped.inc()
        log.warning("a response was not published to %s: %s", self.topic, exc)

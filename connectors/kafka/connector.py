"""`ferry kafka-connector`: consume topics, invoke subscribed functions, commit what is final.

Records are fetched while the per-partition buffer has room (`max_uncommitted`; a full
partition is paused: `pauses.py`), scheduled in ordering lanes (`lanes.py`), dispatched to
every subscribed function with in-process retries, dead-lettered when a function's outcome is
a final failure, and only then marked finished in the partition's ledger (`processing.py`,
`ledger.py`). A commit task commits each partition's finished prefix every `commit_interval`
(`commits.py`); rebalances (`rebalance.py`) and drains commit what is final before letting a
partition go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from connectors.core.controller import Controller
from connectors.core.supervision import cancel_and_wait, until_stopped
from connectors.kafka import client
from connectors.kafka.client import KafkaUnavailable
from connectors.kafka.commits import Commits
from connectors.kafka.config import KafkaConnectorConfig
from connectors.kafka.deadletter import DeadLetters
from connectors.kafka.lanes import LaneScheduler, lane_for
from connectors.kafka.ledger import CommitTracker
from connectors.kafka.metrics import KafkaMetrics
from connectors.kafka.pauses import Backpressure
from connectors.kafka.processing import RecordProcessor, Work, pause_for
from connectors.kafka.rebalance import Rebalances
from connectors.kafka.responses import ResponseTopic
from connectors.kafka.rewinds import OffsetRewinds
from connectors.kafka.stalls import Stalls

log = logging.getLogger("ferry.kafka")

FETCH_TIMEOUT_MS = 500
MAP_RETRY_SECONDS = 1.0


class KafkaConnector:
    name = "kafka-connector"

    def __init__(self, config: KafkaConnectorConfig) -> None:
        self.config = config
        self.kafka = config.kafka
        self.registry = CollectorRegistry()
        self.controller = Controller.build(self.name, config, self.registry)
        self.metrics = self.controller.metrics
        self.gateway = self.controller.gateway
        self.refresher = self.controller.topics
        self.kafka_metrics = KafkaMetrics(self.registry)
        self.security = client.security_options(config.security)
        self.tracker: CommitTracker[TopicPartition] = CommitTracker()
        self.client_id = f"ferry-{socket.gethostname()}-{os.getpid()}"
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._responses: ResponseTopic | None = None
        self._owned: set[TopicPartition] = set()  # changed only by `Rebalances`
        self._stopping = asyncio.Event()
        self._fetch_idle = asyncio.Event()
        self._fetch_idle.set()
        self.backpressure = Backpressure(self.kafka.max_uncommitted, self.tracker, self._owned)
        self.rewinds = OffsetRewinds(self.tracker, self.kafka_metrics)
        self.stalls = Stalls()  # partitions that cannot move on now
        self.commits = Commits(
            self.kafka.commit_interval,
            self.tracker,
            self.rewinds,
            self.metrics,
            self.kafka_metrics,
        )
        self.processor = RecordProcessor(
            self.kafka,
            self.controller,
            owned=self._owned,
            tracker=self.tracker,
            pauses=self.backpressure.pauses,
            stalls=self.stalls,
            kafka_metrics=self.kafka_metrics,
            stopping=self._stopping,
        )
        self.lanes: LaneScheduler[Work] = LaneScheduler(
            self.processor.process, config.connector.max_inflight
        )
        self.controller.step_aside = self.lanes.step_aside
        # read when Prometheus scrapes (on this event loop), never kept up to date by hand
        self.kafka_metrics.paused.set_function(lambda: len(self.backpressure.pauses.paused))
        self.kafka_metrics.uncommitted.set_function(lambda: self.tracker.pending)
        self.kafka_metrics.stalled.set_function(lambda: len(self.stalls))

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        hosts, bound = self.kafka.broker_hosts, self.kafka.startup_timeout
        if self.kafka.dead_letter_topic or self.kafka.response_topic:
            self._producer = client.build_producer(self.kafka, self.security, self.client_id)
            await client.start_client(self._producer, "producer", hosts, bound)
        consumer = client.build_consumer(self.kafka, self.security, self.client_id)
        try:
            await client.start_client(consumer, "consumer", hosts, bound)
        except Exception:
            if self._producer is not None:
                await client.stop_quietly(self._producer)
            raise
        rebalances = Rebalances(
            consumer,
            self.kafka.revoke_timeout,
            owned=self._owned,
            tracker=self.tracker,
            lanes=self.lanes,
            pauses=self.backpressure.pauses,
            commits=self.commits,
            rewinds=self.rewinds,
            metrics=self.metrics,
            kafka_metrics=self.kafka_metrics,
        )
        client.subscribe(consumer, self.kafka.topics, rebalances)
        self._consumer = self.commits.consumer = self.backpressure.consumer = consumer
        self.processor.dead = DeadLetters(
            self._producer,
            self.kafka.dead_letter_topic,
            self.metrics,
            lambda: self.controller.stopping,
            self.stalls,
        )
        if self._producer is not None and self.kafka.response_topic:
            self._responses = ResponseTopic(
                self._producer, self.kafka.response_topic, self.kafka_metrics
            )
            self._responses.start()
            self.controller.subscribe(self._responses)
        await self.refresher.refresh()
        log.info(
            "consuming %s as group %s (ordering=%s, max_inflight=%d) for %s",
            ",".join(self.kafka.topics),
            self.kafka.group,
            self.kafka.ordering,
            self.config.connector.max_inflight,
            self.config.gateway.gateway_url,
        )

    def ready(self) -> bool:
        """Consuming, with a topic map, and no partition that cannot move on (`stalls`)."""
        return (
            self._consumer is not None
            and self.refresher.rebuilt_once
            and not self._stopping.is_set()
            and not self.stalls
        )

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Fetch until stopped, beside the topic-map and commit loops; if any of them dies,
        raise (`TaskDied`) so the process exits 1 instead of silently stopping that work."""
        self._fetch_idle.clear()
        tasks = [
            asyncio.create_task(self._fetch_until_stopped(), name="fetch"),
            asyncio.create_task(self.refresher.run(), name="topic-map"),
            asyncio.create_task(self.commits.commit_periodically(), name="commits"),
        ]
        if self._responses is not None:
            tasks.extend(self._responses.tasks)
        try:
            await until_stopped(self._stopping, tasks)
            await tasks[0]
        finally:
            fetch, helpers = tasks[0], tasks[1:3]
            # only still running when another task died: records it fetched but did not start
            await cancel_and_wait(fetch)  # stay uncommitted, so the next owner reads them again
            self._fetch_idle.set()
            await cancel_and_wait(*helpers)

    async def drain(self, timeout: float) -> None:
        """Stop fetching, let started records finish within `timeout`, commit what is final."""
        self._stopping.set()
        self.controller.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._fetch_idle.wait(), FETCH_TIMEOUT_MS / 1000 + 2)
        cancelled = await self.lanes.stop(timeout)
        if cancelled:
            log.warning("%d records unfinished at the drain bound stay uncommitted", cancelled)
        if self._consumer is not None:
            await self.commits.commit()
            await client.stop_quietly(self._consumer)
        if self._responses is not None:
            await self._responses.close(2.0)
        if self._producer is not None:
            await client.stop_quietly(self._producer)
        await self.gateway.close()

    # -- fetching --------------------------------------------------------------------------

    async def _fetch_until_stopped(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping.is_set():
            if not self.refresher.rebuilt_once:
                # never treat records as unmatched before the first topic map is known
                await pause_for(self._stopping, MAP_RETRY_SECONDS)
                continue
            room = self.backpressure.room()
            try:
                batch = await client.translate(
                    "fetch", consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=room)
                )
            except KafkaUnavailable as exc:
                log.warning("%s; retrying", exc)
                await pause_for(self._stopping, 1.0)
                continue
            if self._stopping.is_set():
                return  # not tracked, so never committed: the next owner reads them again
            for partition, records in batch.items():
                for record in records:
                    self._submit(partition, record)
            await self.rewinds.notice_shrunk(consumer, list(self._owned))

    def _submit(self, partition: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        ledger = self.tracker.ledger(partition)
        if ledger is None or partition not in self._owned:
            return
        if ledger.went_back(record.offset):
            ledger = self.rewinds.restart(
                partition, f"offset {record.offset} came after {ledger.next_offset}"
            )
        ledger.add(record.offset)
        lane = lane_for(self.kafka.ordering, record.key, record.offset)
        self.lanes.submit(partition, lane, Work(partition, record, ledger))

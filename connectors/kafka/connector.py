"""`ferry kafka-connector`: consume topics, invoke subscribed functions, commit what is final.

Records are fetched while the per-partition buffer has room (`max_uncommitted`; a full
partition is paused), scheduled in ordering lanes (`lanes.py`), dispatched to every subscribed
function with in-process retries (`Controller`), dead-lettered when a function's outcome is a
final failure, and only then marked finished in the partition's ledger (`ledger.py`). A commit
task commits each partition's finished prefix every `commit_interval`; rebalances and drains
commit what is final before letting a partition go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from connectors.core import tracing
from connectors.core.controller import Controller
from connectors.core.delivery import Abandoned, Delivery, unexpected_error
from connectors.core.staleness import expired_deliveries, staleness
from connectors.core.supervision import until_stopped
from connectors.kafka import client
from connectors.kafka.client import KafkaUnavailable
from connectors.kafka.config import KafkaConnectorConfig
from connectors.kafka.deadletter import DeadLetters
from connectors.kafka.lanes import LaneScheduler, lane_for
from connectors.kafka.ledger import CommitTracker, PartitionLedger
from connectors.kafka.metrics import KafkaMetrics
from connectors.kafka.pauses import PartitionPauses
from connectors.kafka.records import record_event, record_span
from connectors.kafka.responses import ResponseTopic
from connectors.kafka.rewinds import OffsetRewinds
from connectors.kafka.stalls import Stalls

log = logging.getLogger("ferry.kafka")

FETCH_TIMEOUT_MS = 500
FETCH_MAX_RECORDS = 500
MAP_RETRY_SECONDS = 1.0


class Work(NamedTuple):
    """One fetched record and the ledger of the ownership it was fetched under (a named
    tuple: one is made per record, and a tuple is the cheapest immutable value to make)."""

    partition: TopicPartition
    record: ConsumerRecord[bytes, bytes]
    ledger: PartitionLedger


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
        self.lanes: LaneScheduler[Work] = LaneScheduler(
            self._process, config.connector.max_inflight
        )
        self.client_id = f"ferry-{socket.gethostname()}-{os.getpid()}"
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._dead: DeadLetters | None = None
        self._responses: ResponseTopic | None = None
        self._owned: set[TopicPartition] = set()
        self.pauses: PartitionPauses[TopicPartition] = PartitionPauses(
            self.kafka.max_uncommitted, self._pause, self._resume
        )
        # read when Prometheus scrapes (on this event loop), never kept up to date by hand
        self.kafka_metrics.paused.set_function(lambda: len(self.pauses.paused))
        self.kafka_metrics.uncommitted.set_function(lambda: self.tracker.pending)
        self.rewinds = OffsetRewinds(self.tracker, self.kafka_metrics)
        self.stalls = Stalls()  # partitions that cannot move on now
        self.kafka_metrics.stalled.set_function(lambda: len(self.stalls))
        self._stopping = asyncio.Event()
        self._fetch_idle = asyncio.Event()
        self._fetch_idle.set()

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
        client.subscribe(consumer, self.kafka.topics, _Rebalance(self))
        self._consumer = consumer
        self._dead = DeadLetters(
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
            asyncio.create_task(self._commit_periodically(), name="commits"),
        ]
        if self._responses is not None:
            tasks.extend(self._responses.tasks)
        try:
            await until_stopped(self._stopping, tasks)
            await tasks[0]
        finally:
            fetch, helpers = tasks[0], tasks[1:3]
            fetch.cancel()  # only still running when another task died: records it fetched
            await asyncio.gather(fetch, return_exceptions=True)  # but did not start stay
            self._fetch_idle.set()  # uncommitted, so the next owner reads them again
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

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
            await self._commit()
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
                await self._pause_for(MAP_RETRY_SECONDS)
                continue
            room = self._apply_backpressure()
            try:
                batch = await client.translate(
                    "fetch", consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=room)
                )
            except KafkaUnavailable as exc:
                log.warning("%s; retrying", exc)
                await self._pause_for(1.0)
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

    def _apply_backpressure(self) -> int:
        """Pause partitions holding `max_uncommitted` records, resume them below half;
        return how many records the next fetch may bring."""
        room = self.pauses.apply((p, self._held(p)) for p in list(self._owned))
        return max(1, min(room, FETCH_MAX_RECORDS))

    def _held(self, partition: TopicPartition) -> int:
        ledger = self.tracker.ledger(partition)
        return ledger.pending if ledger is not None else 0

    def _pause(self, partition: TopicPartition) -> None:
        assert self._consumer is not None
        self._consumer.pause(partition)

    def _resume(self, partition: TopicPartition) -> None:
        assert self._consumer is not None
        self._consumer.resume(partition)

    def _finished(self, work: Work) -> None:
        """The record is final: its offset may be committed once those before it are, and
        its partition resumes at once if this brought it below the pause's low mark."""
        work.ledger.finish(work.record.offset)
        partition = work.partition
        if (
            partition in self.pauses.paused
            and partition in self._owned
            and self.tracker.ledger(partition) is work.ledger
        ):
            self.pauses.finished(partition, work.ledger.pending)

    async def _pause_for(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- one record ------------------------------------------------------------------------

    async def _process(self, work: Work) -> None:
        """Every subscribed function to a final outcome, failures recorded as dead, then
        the offset is finished (committable once everything before it is). An error nothing
        foresaw is a failed attempt of the whole record (`_failed_unexpectedly`): the
        partition never waits on it for good. (The delivery is written out here, not in a
        coroutine of its own: this runs for every record.)"""
        failures = 0
        record = work.record
        while True:
            try:
                headers = record.headers or ()
                event = record_event(
                    record.topic, record.partition, record.offset, record.key, record.value, headers
                )
                span = record_span(record, self.kafka.group) if tracing.ENABLED else None
                try:
                    stale = self._staleness(record.timestamp)
                    if stale is None:
                        deliveries = await self.controller.dispatch(event)
                    else:  # too old to deliver: a failed delivery per function, none invoked
                        self.controller.metrics.received.inc(event.topic)  # as `dispatch` does
                        functions = self.controller.match(event.topic)
                        deliveries = expired_deliveries(self.controller, event, functions, stale)
                    for delivery in deliveries:
                        if not delivery.ok:
                            await self._dead_letter(delivery, record, headers)
                finally:
                    if span is not None:
                        span.end()
            except Abandoned as exc:
                log.info("left uncommitted for redelivery: %s", exc)
                return
            except Exception as exc:
                failures += 1
                if await self._failed_unexpectedly(work, exc, failures):
                    continue
                return
            self._finished(work)
            return

    def _staleness(self, timestamp: int) -> str | None:
        """Why a record of `timestamp` (Unix ms) is too old to deliver, or None."""
        max_age = self.kafka.max_event_age
        if max_age <= 0:  # no limit (the default): no clock read
            return None
        return staleness(max_age, timestamp / 1000, time.time())

    async def _dead_letter(
        self,
        delivery: Delivery,
        record: ConsumerRecord[bytes, bytes],
        headers: Sequence[tuple[str, bytes | None]],
    ) -> None:
        assert self._dead is not None
        await self._dead.record(
            delivery,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=headers,
        )

    async def _failed_unexpectedly(self, work: Work, exc: Exception, failures: int) -> bool:
        """Retry the record after the policy's back-off (True), or, once the attempts are
        spent, record it as dead in the log with the reason and finish it (False); False
        too when stopping (it stays uncommitted). While it waits, its partition counts as
        stalled (`/readyz`, `kafka_connector_stalled_partitions`)."""
        record = work.record
        source = f"{record.topic}/{record.partition}@{record.offset}"
        self.kafka_metrics.record_errors.inc()
        outcome = self.controller.policy.decide(
            status=None, attempt=failures, error=unexpected_error(exc)
        )
        if outcome.final:
            log.error("dead letter (log): record %s: %s", source, outcome.reason, exc_info=exc)
            self.metrics.dead_letters.labels("", "log").inc()
            self._finished(work)
            return False
        log.error(
            "record %s: %s (attempt %d), again in %.2fs",
            source,
            outcome.reason,
            failures,
            outcome.delay,
            exc_info=exc,
        )
        with self.stalls.hold(_source(work.partition)):
            await self._pause_for(outcome.delay)
        return not self._stopping.is_set() and not self.controller.stopping

    # -- commits ---------------------------------------------------------------------------

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.kafka.commit_interval)
            await self._commit()
            self._report_lag()

    async def _commit(self, partitions: list[TopicPartition] | None = None) -> None:
        offsets = self.tracker.due(iter(partitions) if partitions is not None else None)
        if not offsets or self._consumer is None:
            return
        offsets = await self.rewinds.still_ours(self._consumer, offsets)
        if not offsets:
            return
        try:
            await self._consumer.commit(dict(offsets))
        except KafkaError as exc:
            self.kafka_metrics.commit_failures.inc()
            log.warning("commit of %s failed, retrying later: %s", _show(offsets), exc)
            return
        self.tracker.committed(offsets)
        self.kafka_metrics.commits.inc()
        log.debug("committed %s", _show(offsets))

    def _report_lag(self) -> None:
        """Records at the broker past what this process has committed, per partition."""
        if self._consumer is None:
            return
        for partition in self.tracker.partitions():
            ledger = self.tracker.ledger(partition)
            highwater = self._consumer.highwater(partition)
            if ledger is None or highwater is None:
                continue
            base = ledger.committed if ledger.committed is not None else ledger.first
            if base is not None:
                self.metrics.lag.labels(_source(partition)).set(max(highwater - base, 0))

    # -- rebalances ------------------------------------------------------------------------

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Stop starting work for lost partitions, let in-flight work finish within
        `revoke_timeout`, commit what is final, then forget them."""
        lost = [p for p in revoked if p in self._owned]
        if not lost:
            return
        self._owned.difference_update(lost)
        self.kafka_metrics.rebalances.inc(len(lost))
        stuck = await asyncio.gather(
            *(self.lanes.close_group(p, self.kafka.revoke_timeout) for p in lost)
        )
        if sum(stuck):
            self.kafka_metrics.revoke_cancelled.inc(sum(stuck))
            log.warning("%d lanes unfinished at revoke_timeout stay uncommitted", sum(stuck))
        await self._commit(lost)
        for partition in lost:
            self.tracker.release(partition)
            self.pauses.forget(partition)
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(_source(partition))
        self.kafka_metrics.assigned.set(len(self._owned))
        log.info("partitions revoked: %s", ", ".join(sorted(_source(p) for p in lost)))

    async def partitions_taken(self, assigned: set[TopicPartition]) -> None:
        """Own the newly assigned partitions, their group offsets noted (`rewinds`)."""
        fresh = self.partitions_assigned(assigned)
        if self._consumer is not None:
            await self.rewinds.baseline(self._consumer, fresh)

    def partitions_assigned(self, assigned: set[TopicPartition]) -> list[TopicPartition]:
        """Own the newly assigned partitions; returns them."""
        fresh = [p for p in assigned if p not in self._owned]
        for partition in fresh:
            self.tracker.own(partition)
            self.lanes.open(partition)
            self._owned.add(partition)
        self.kafka_metrics.assigned.set(len(self._owned))
        if fresh:
            log.info("partitions assigned: %s", ", ".join(sorted(_source(p) for p in fresh)))
        return fresh


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, connector: KafkaConnector) -> None:
        self.connector = connector

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.connector.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.connector.partitions_taken(assigned)


def _source(partition: TopicPartition) -> str:
    return f"{partition.topic}/{partition.partition}"


def _show(offsets: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{_source(p)}@{o}" for p, o in sorted(offsets.items()))

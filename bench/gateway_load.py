"""Load and measurement for the gateway benchmark: closed-loop drivers, the cheapest
keep-alive HTTP client that can drive the gateway, and CPU readings of each process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bench.common import Child, machine_busy_seconds


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
    name: str, count: int, seconds: float, concurrency: int, one: Callable[[], Awaitable[bool]]
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
            if await one():
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return Result(name, latencies, time.perf_counter() - started, errors)


class RawHttpClient:
    """One keep-alive HTTP/1.1 connection with the least client-side work per request.

    A full client (aiohttp) costs about as much CPU per request as the gateway does, and on a
    small machine the load generator would then measure itself.
    """

    def __init__(self, port: int, path: str, body: bytes, expect: bytes = b"202") -> None:
        self.port = port
        self.expect = b"HTTP/1.1 " + expect
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
        return head.startswith(self.expect)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


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
        calls = len(result.latencies)
        per_call = used[0] / calls * 1e6 if calls else float("nan")
        nats_per_call = used[1] / calls * 1e6 if calls else float("nan")
        cores = " ".join(
            f"{name} {seconds / result.elapsed:4.2f}"
            for name, seconds in zip(("gateway", "nats", "this", "machine"), used, strict=True)
        )
        return result, (
            f"  cores busy: {cores}; gateway {per_call:.0f} µs CPU per call, "
            f"nats-server {nats_per_call:.1f}"
        )

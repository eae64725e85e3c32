"""Pieces the benchmark scripts share: child processes, a function server, percentiles, RSS."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def venv_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


class Child:
    """A child process that is always stopped when the benchmark ends."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
        self.process = subprocess.Popen(
            list(args), env={**os.environ, **(env or {})}, stdout=self.log, stderr=self.log
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_mb(self) -> float:
        """Peak resident set size (VmHWM) of the child, in MB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the child has used so far."""
        return cpu_seconds(self.pid)

    def tail(self, lines: int = 40) -> str:
        """The last `lines` lines the child printed (its log lives only as long as the run)."""
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nats(store: str) -> tuple[Child, str]:
    port = free_port()
    child = Child(
        [venv_bin("nats-server"), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store]
    )
    wait_for_port(port)
    return child, f"nats://127.0.0.1:{port}"


class ChildGroup:
    """Several children measured and stopped as one (the servers of a NATS cluster)."""

    def __init__(self, children: list[Child]) -> None:
        self.children = children

    def cpu_seconds(self) -> float:
        return sum(child.cpu_seconds() for child in self.children)

    def stop(self) -> None:
        for child in self.children:
            child.stop()


def start_nats_cluster(store: str, size: int = 3) -> tuple[ChildGroup, str]:
    """`size` JetStream servers routed into one cluster; returns once a meta leader sees every
    server as a current peer (R3 streams can be placed), with the comma-separated seed list."""
    ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
    children = []
    for index, (port, cluster_port, monitor_port) in enumerate(ports):
        routes = ",".join(f"nats://127.0.0.1:{c}" for _, c, _ in ports if c != cluster_port)
        children.append(
            Child(
                [
                    venv_bin("nats-server"),
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-sd",
                    f"{store}/n{index}",
                    "-m",
                    str(monitor_port),
                    "--server_name",
                    f"n{index}",
                    "--cluster_name",
                    "bench",
                    "--cluster",
                    f"nats://127.0.0.1:{cluster_port}",
                    "--routes",
                    routes,
                ]
            )
        )
    for port, _, _ in ports:
        wait_for_port(port)
    _wait_for_meta_leader([m for _, _, m in ports], size)
    return ChildGroup(children), ",".join(f"nats://127.0.0.1:{p}" for p, _, _ in ports)


def _wait_for_meta_leader(monitor_ports: list[int], size: int, timeout: float = 30.0) -> None:
    import json
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for port in monitor_ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/jsz", timeout=2) as r:
                    meta = json.load(r).get("meta_cluster") or {}
            except OSError:
                continue
            peers = [p for p in meta.get("replicas") or [] if p.get("current")]
            if meta.get("leader") and len(peers) == size - 1:
                time.sleep(1.0)  # a peer is "current" a little before it takes placements
                return
        time.sleep(0.2)
    raise TimeoutError("the NATS cluster did not elect a meta leader")


def start_function_server(delay: float, mode: str = "echo") -> tuple[Child, str]:
    """The lean function (bench/function_server.py) in its own process: answers every call
    after `delay` seconds, with its body (`echo`) or the body's digest (`digest`)."""
    port = free_port()
    child = Child(
        [sys.executable, str(ROOT / "bench" / "function_server.py"), str(port), str(delay), mode]
    )
    wait_for_port(port)
    return child, f"http://127.0.0.1:{port}"


def machine_busy_seconds() -> float:
    """CPU seconds all cores of this machine have spent busy (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


PostFn = Callable[[str, bytes], Awaitable[bytes]]


async def _post_rate(
    post: PostFn, url: str, concurrency: int, count: int, body: bytes, then: str | None
) -> float:
    """`count` POSTs from `concurrency` loops; with `then`, each answer is POSTed on there too,
    as a worker sends a callback. Returns POSTs to `url` per second."""
    remaining = count

    async def one_worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            answer = await post(url, body)
            if then is not None:
                await post(then, answer)

    started = time.perf_counter()
    await asyncio.gather(*(one_worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def raw_post_rate(
    url: str, concurrency: int, count: int, body: bytes, then: str | None = None
) -> float:
    """The ceiling: a bare aiohttp client POSTing `count` requests at `concurrency`."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(target: str, data: bytes) -> bytes:
            async with session.post(target, data=data) as response:
                return await response.read()

        return await _post_rate(post, url, concurrency, count, body, then)


async def raw_http1_rate(
    url: str, concurrency: int, count: int, body: bytes, then: str | None = None
) -> float:
    """The same ceiling with ferry's own lean client (`connectors/core/http1`)."""
    from connectors.core.http1 import Http1Client

    client = Http1Client(limit=concurrency)

    async def post(target: str, data: bytes) -> bytes:
        return (await client.request("POST", target, body=data)).body

    try:
        return await _post_rate(post, url, concurrency, count, body, then)
    finally:
        await client.close()

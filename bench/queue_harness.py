"""The queue-worker benchmark's harness: a cheap callback receiver, a publisher that counts
PubAcks, and readings of the worker's `/metrics` (slots in use, prefetched messages)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from nats.aio.client import Client
from nats.aio.msg import Msg

from asyncq import codec
from asyncq.codec import QueueRequest
from asyncq.layout import DEFAULT_STREAM, function_subject, queue_subject
from bench.common import free_port


class Receiver:
    """Callback receiver: remembers when each call id came back.

    A minimal HTTP/1.1 responder on a bare asyncio protocol rather than an aiohttp server: it
    shares the two cores with the worker, so the less it costs, the more the figures say about
    the worker. It reads Content-Length framed requests (what the worker sends) and answers 200.
    """

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.done = asyncio.Event()
        self.expected = 0
        self.port = free_port()

    async def start(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: _CallbackProtocol(self), "127.0.0.1", self.port, reuse_address=True
        )

    def record(self, call_id: str) -> None:
        self.arrived[call_id] = time.perf_counter()
        if len(self.arrived) >= self.expected:
            self.done.set()

    def expect(self, total: int) -> None:
        self.expected = total
        self.done.clear()
        if len(self.arrived) >= total:
            self.done.set()


class _CallbackProtocol(asyncio.Protocol):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length, call_id = 0, ""
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"x-call-id":
                    call_id = value.strip().decode()
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.receiver.record(call_id)
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


class QueueFeeder:
    """Publishes QueueRequests to JetStream and counts the stream's acknowledgements.

    Each message carries a reply subject, and one subscription collects the PubAcks, so nothing
    unconfirmed goes unnoticed while the publisher spends little CPU per message (a benchmark
    for the worker should not be limited by its own load generator).
    """

    def __init__(self, nc: Client, *, by_function: bool = False) -> None:
        self.nc = nc
        self.by_function = by_function  # on each call's function subject, not the plain one
        self.inbox = nc.new_inbox()
        self.acked = 0
        self.failed: list[bytes] = []
        self.published = 0
        self.acks = asyncio.Event()  # set on each PubAck; `confirmed` compares the counts

    async def start(self) -> None:
        async def on_ack(msg: Msg) -> None:
            if b'"error"' in msg.data:
                self.failed.append(msg.data)
            self.acked += 1
            self.acks.set()

        await self.nc.subscribe(f"{self.inbox}.*", cb=on_ack)

    async def publish(self, requests: list[QueueRequest], sent: dict[str, float]) -> None:
        plain = queue_subject(DEFAULT_STREAM, "")
        encoded = [(r.call_id, r.function, codec.encode(r)) for r in requests]
        for index, (call_id, function, payload) in enumerate(encoded):
            subject = function_subject(DEFAULT_STREAM, "", function) if self.by_function else plain
            sent[call_id] = time.perf_counter()
            self.published += 1
            await self.nc.publish(
                subject,
                payload,
                reply=f"{self.inbox}.{self.published}",
                headers={"Nats-Msg-Id": call_id},
            )
            if index % 256 == 255:
                await self.nc.flush()
        await self.nc.flush()

    async def confirmed(self, timeout: float = 60) -> None:
        """Wait for a PubAck for every message published so far; fail if any was a refusal."""
        async with asyncio.timeout(timeout):
            while self.acked < self.published:
                self.acks.clear()
                await self.acks.wait()
        if self.failed:
            raise RuntimeError(f"JetStream refused {len(self.failed)} messages: {self.failed[0]!r}")


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


async def gauge(health_port: int, name: str) -> float:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{health_port}/metrics") as response,
    ):
        for line in (await response.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def inflight(health_port: int) -> float:
    return await gauge(health_port, "queue_worker_function_invocation_inflight")


SAMPLE_SECONDS = 0.2


async def sample_slots(health_port: int, into: list[tuple[float, float]]) -> None:
    """Every `SAMPLE_SECONDS`: (invocations running, messages waiting in the prefetch buffer).

    One scrape a sample on one kept-alive connection: the worker renders its whole exposition
    for each, and a fair worker's has a series per function, so scraping often (it was two
    scrapes on new connections every 50 ms) cost it a few percent more CPU than a static one,
    where Prometheus would scrape once every 15 s."""
    wanted = ("queue_worker_function_invocation_inflight", "queue_worker_messages_prefetched")
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"http://127.0.0.1:{health_port}/metrics") as response:
                text = await response.text()
            values = dict.fromkeys(wanted, 0.0)
            for line in text.splitlines():
                name, _, value = line.partition(" ")
                if name in values:
                    values[name] = float(value)
            into.append((values[wanted[0]], values[wanted[1]]))
            await asyncio.sleep(SAMPLE_SECONDS)


def steady_rate(arrivals: list[float]) -> float:
    """Callbacks per second between the 10th and the 90th percentile of arrivals: the rate the
    worker sustains, without the first and last waves of calls."""
    if len(arrivals) < 10:
        return float("nan")
    low, high = len(arrivals) // 10, len(arrivals) * 9 // 10
    return (high - low) / max(arrivals[high] - arrivals[low], 1e-9)


async def drained(nc: Client, started: float, timeout: float) -> float:
    """When the request stream became empty (every message acknowledged)."""
    js = nc.jetstream()
    while time.perf_counter() - started < timeout:
        if (await js.stream_info(DEFAULT_STREAM)).state.messages == 0:
            return time.perf_counter()
        await asyncio.sleep(0.02)
    raise TimeoutError("the worker did not finish in time")

"""Test helpers around one isolated request stream: publish, read dead letters, run workers."""

from __future__ import annotations

import asyncio
import io
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from asyncq.codec import QueueRequest, encode
from asyncq.jetstream import ensure_streams
from asyncq.layout import durable_name, queue_functions_filter, queue_subject
from asyncq.publisher import Publisher, build_request
from connectors.core.runner import serve
from connectors.core.settings import load_settings
from queue_worker.config import QueueWorkerConfig
from queue_worker.worker import QueueWorker
from tests.support.brokers import test_environ
from tests.support.ports import eventually

STOP_SECONDS = 60.0  # a drain in these tests ends well within it; under pytest's 120 s


def task_stacks() -> str:
    """Every task of this event loop and where it waits, down the chain of awaits (a task's
    own stack shows only its outermost coroutine), for a hang's failure message."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"{task!r}\n")
        awaited: Any = task.get_coro()
        for _ in range(16):
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                break
            code = frame.f_code
            out.write(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}\n")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return out.getvalue()[-20_000:]


@dataclass
class DeadLetter:
    subject: str
    data: bytes
    headers: dict[str, str]


class QueueUnderTest:
    """A request stream and dead-letter stream with names unique to one test."""

    def __init__(self, nc: Client, nats_url: str, gateway_url: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.nats_url = nats_url
        self.gateway_url = gateway_url
        self.stream = f"faas-request-{tag}"
        self.dead_stream = f"faas-dead-letter-{tag}"
        self.publisher = Publisher(self.js, self.stream)

    async def setup(self, replicas: int = 1) -> QueueUnderTest:
        await ensure_streams(self.js, self.stream, self.dead_stream, replicas=replicas)
        return self

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "nats_url": self.nats_url,
            "nats_stream": self.stream,
            "dead_letter_stream": self.dead_stream,
            "gateway_url": self.gateway_url,
            "health_port": "0",
            "health_host": "127.0.0.1",
            "callback_allow_private": "true",
            "initial_retry_wait": "20ms",
            "max_retry_wait": "100ms",
            "max_retry_attempts": "5",
            "graceful_timeout": "10s",
        }
        env.update(overrides)
        return env

    async def publish(self, function: str, body: bytes = b"", **kwargs: object) -> QueueRequest:
        request = build_request(function, body=body, **kwargs)  # type: ignore[arg-type]
        await self.publisher.enqueue(request)
        return request

    async def publish_raw(self, data: bytes, queue_name: str = "") -> None:
        await self.js.publish(queue_subject(self.stream, queue_name), data, stream=self.stream)

    async def pending(self, queue_name: str = "") -> int:
        """Messages of one queue still stored in the work queue (delivered or not), on its
        plain subject or (fair mode) on its functions' subjects."""
        total = 0
        for subjects in (
            queue_subject(self.stream, queue_name),
            queue_functions_filter(self.stream, queue_name),
        ):
            info = await self.js.stream_info(self.stream, subjects_filter=subjects)
            total += sum((info.state.subjects or {}).values())
        return total

    async def deliveries(self, *workers: QueueWorker, queue_name: str = "") -> int:
        """Every delivery made to run a call, redeliveries included: once every message is
        acknowledged, more deliveries than messages means one was redelivered. The queue's
        consumer and, in fair mode, its per-function consumers; a call fair mode's sorter
        moved (as counted by `workers`) was delivered twice to run once, so counts once."""
        prefix = queue_functions_filter(self.stream, queue_name)[:-1]
        runs = [
            info
            for info in await self.js.consumers_info(self.stream)
            if (info.config.filter_subject or "").startswith(prefix)
            and "." not in (info.config.filter_subject or "")[len(prefix) :]
        ]
        runs.append(await self.js.consumer_info(self.stream, durable_name(queue_name)))
        moved = sum(w.fair.sorter.moved_total for w in workers if w.fair is not None)
        return (
            sum(int(info.delivered.consumer_seq) if info.delivered else 0 for info in runs) - moved
        )

    async def drained(self) -> bool:
        """Every message of the default queue acknowledged (nothing waiting or in flight)."""
        return await self.pending() == 0

    async def stored(self) -> int:
        info = await self.js.stream_info(self.stream)
        return int(info.state.messages)

    async def dead_letters(self) -> list[DeadLetter]:
        info = await self.js.stream_info(self.dead_stream)
        out: list[DeadLetter] = []
        first, last = info.state.first_seq, info.state.last_seq
        if not info.state.messages:
            return out
        for seq in range(first, last + 1):
            try:
                raw = await self.js.get_msg(self.dead_stream, seq)
            except nats.js.errors.NotFoundError:
                continue
            out.append(DeadLetter(raw.subject or "", raw.data or b"", dict(raw.headers or {})))
        return out

    @asynccontextmanager
    async def worker(self, **env: str) -> AsyncIterator[QueueWorker]:
        """A queue worker running in this process until the block ends (then drained)."""
        config = load_settings(QueueWorkerConfig, self.env(**env))
        worker = QueueWorker(config)
        stop = asyncio.Event()
        task = asyncio.create_task(
            serve(worker, config.runtime, handle_signals=False, stop_event=stop)
        )
        await eventually(lambda: worker.ready() or task.done(), what="worker ready")
        if task.done():
            raise AssertionError(f"worker exited with {task.result()}")
        try:
            yield worker
        finally:
            stop.set()
            try:  # a stop that hangs fails here, with what each task was waiting for
                code = await asyncio.wait_for(asyncio.shield(task), STOP_SECONDS)
            except TimeoutError:
                raise AssertionError(
                    f"worker not stopped after {STOP_SECONDS}s; its tasks:\n{task_stacks()}"
                ) from None
            assert code == 0

    async def spawn_worker(self, **env: str) -> asyncio.subprocess.Process:
        """`ferry queue-worker` as a child process."""
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ferry",
            "queue-worker",
            env=test_environ(**self.env(**env)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )


def encode_request(request: QueueRequest) -> bytes:
    return encode(request)


@asynccontextmanager
async def queue_on(nats_url: str, gateway_url: str) -> AsyncIterator[QueueUnderTest]:
    """A queue (its own streams) on the NATS server at `nats_url`, connected while in use."""
    nc = await nats.connect(nats_url)
    try:
        yield await QueueUnderTest(nc, nats_url, gateway_url).setup()
    finally:
        await nc.close()

"""The floor under the queue worker's CPU per message: the same work, none of ferry's logic.

Run by `bench/queue_worker.py --worker floor` in place of `ferry queue-worker` (same settings
from the environment: nats_url, gateway_url, max_inflight, health_port, health_host), never on
its own. For each message it does what any worker of the OpenFaaS queue must do, with the
libraries ferry uses: pull it (ferry's `Puller`, nats-py), decode the QueueRequest (ferry's
codec), call the function (ferry's HTTP/1.1 client), POST the answer to the callback URL with
the call id and status, and ack, on uvloop. Nothing else: no call ledger, no retries or dead
letters, no fairness, lanes, limits or breaker, no metrics but the two gauges the benchmark
samples, no SSRF check, no expiry, no tracing hooks, no hand-back on a fault (a failure
stops this process; the benchmark then fails).

So the queue worker's CPU per message less this one's is what ferry's own logic costs, and
this one's is what no change to that logic can take away.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sys
from pathlib import Path

import nats
from aiohttp import web
from nats.aio.msg import Msg
from nats.js import api as js_api

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncq import codec
from asyncq.jetstream import add_function_subjects, ensure_streams
from asyncq.layout import DEAD_LETTER_STREAM, DEFAULT_STREAM
from connectors.core.http1 import Http1Client
from connectors.core.runner import event_loop_factory, settle_collector
from queue_worker.puller import Puller

DURABLE = "floor"
PREFETCH = 16  # asked for beyond the free slots, so a freed slot finds a message waiting


def setting(name: str, default: str | None = None) -> str:
    """A setting as `ferry queue-worker` takes it (OpenFaaS's lower-case names)."""
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"worker_floor: {name} is not set")
    return value


class Floor:
    def __init__(self) -> None:
        self.gateway = setting("gateway_url").rstrip("/")
        self.limit = int(setting("max_inflight"))
        self.functions = Http1Client(limit=self.limit)
        self.callbacks = Http1Client(limit=self.limit)
        self.running = 0
        self.waiting: collections.deque[Msg] = collections.deque()
        self.puller: Puller | None = None
        self.ready = asyncio.Event()  # consumer made and pulling: /readyz answers 200
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        nc = await nats.connect(setting("nats_url").split(","))
        js = nc.jetstream()
        stream = await ensure_streams(js, DEFAULT_STREAM, DEAD_LETTER_STREAM)
        # the per-function subjects too, as a fair-mode worker adds them (`--subject function`)
        await add_function_subjects(js, stream, DEFAULT_STREAM)
        await js.add_consumer(
            stream,
            js_api.ConsumerConfig(
                durable_name=DURABLE,
                ack_policy=js_api.AckPolicy.EXPLICIT,
                max_ack_pending=self.limit * 4,
                ack_wait=60.0,
            ),
        )
        puller = Puller(nc, stream, DURABLE, self._deliver)
        self.puller = puller
        await puller.start()
        settle_collector()  # as ferry's runner does once started
        self.ready.set()
        while not stop.is_set():
            wanted = self.limit + PREFETCH - self.running - len(self.waiting)
            wanted -= puller.outstanding
            if wanted >= PREFETCH and puller.can_request():
                await puller.request(wanted)
            puller.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):  # and so notice `stop`
                    await puller.changed.wait()
        await puller.stop()
        await nc.drain()

    def _deliver(self, msg: Msg) -> None:
        if self.running < self.limit:
            self._start(msg)
        else:
            self.waiting.append(msg)

    def _start(self, msg: Msg) -> None:
        self.running += 1
        task = asyncio.get_running_loop().create_task(self._call(msg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _call(self, msg: Msg) -> None:
        request = codec.decode(msg.data)
        answer = await self.functions.request(
            "POST",
            f"{self.gateway}/function/{request.function}",
            headers=request.header_pairs(),
            body=request.body,
        )
        if request.callback:
            await self.callbacks.request(
                "POST",
                request.callback,
                headers=(("X-Call-Id", request.call_id), ("X-Function-Status", str(answer.status))),
                body=answer.body,
            )
        await msg.ack()
        self.running -= 1
        if self.waiting:
            self._start(self.waiting.popleft())
        assert self.puller is not None
        self.puller.poke()


async def main() -> None:
    floor = Floor()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(status=200 if floor.ready.is_set() else 503)

    async def metrics(_: web.Request) -> web.Response:
        text = (
            f"queue_worker_function_invocation_inflight {floor.running}\n"
            f"queue_worker_messages_prefetched {len(floor.waiting)}\n"
        )
        return web.Response(text=text)

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host = setting("health_host", "127.0.0.1")
    await web.TCPSite(runner, host, int(setting("health_port"))).start()
    try:
        await floor.run(stop)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(main())

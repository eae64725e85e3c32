"""Topic-map rebuilds with many functions: how long one takes, and how long the event loop is
held while it runs. Not a test: prints figures. The gateway stand-in runs on its own thread
and event loop, on 127.0.0.1, so only the refresher's work lands on the measured loop.

    .venv/bin/python bench/topic_map.py                  # 10k on one topic, 100k over 100 topics
    .venv/bin/python bench/topic_map.py --functions 10000 --topics 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, wait_for_port
from connectors.core.config import GatewaySettings
from connectors.core.gateway import GatewayClient
from connectors.core.topicmap import TopicMapRefresher

MAX_FUNCTIONS = 200_000
REBUILDS = 3


def function_list(count: int, topics: int, extra: int = 0) -> bytes:
    """A /system/functions answer shaped like faas-netes's: every function has a topic,
    labels and a few annotations."""
    return json.dumps(
        [
            {
                "name": f"fn-{i}",
                "namespace": "openfaas-fn",
                "image": f"registry.example/fn-{i}:1.0",
                "replicas": 1,
                "labels": {"faas_function": f"fn-{i}", "team": f"t{i % 17}"},
                "annotations": {
                    "topic": f"topic-{i % topics}",
                    "prometheus.io.scrape": "false",
                    "com.openfaas.retry.attempts": "3",
                },
            }
            for i in range(count + extra)
        ]
    ).encode()


class Gateway:
    """/system/namespaces and /system/functions from prepared bytes, on a thread of its own."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/system/namespaces", self._namespaces)
        app.router.add_get("/system/functions", self._functions)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._loop.run_forever()
        self._loop.close()

    async def _namespaces(self, _: web.Request) -> web.Response:
        return web.json_response(["openfaas-fn"])

    async def _functions(self, _: web.Request) -> web.Response:
        return web.Response(body=self.body, content_type="application/json")

    @contextmanager
    def running(self) -> Iterator[Gateway]:
        self._thread.start()
        wait_for_port(self.port)
        try:
            yield self
        finally:
            if self._runner is not None:
                cleanup = self._runner.cleanup()
                asyncio.run_coroutine_threadsafe(cleanup, self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


class LoopWatch:
    """The longest the event loop went without running a 1 ms ticker."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def start(self) -> None:
        self.longest = 0.0
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.longest


async def timed_refresh(refresher: TopicMapRefresher) -> tuple[float, float]:
    """(seconds for one refresh, longest event-loop stall during it)."""
    watch = LoopWatch()
    watch.start()
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    assert await refresher.refresh(), "the rebuild failed"
    took = time.perf_counter() - started
    return took, await watch.stop()


async def measure(count: int, topics: int) -> None:
    gateway = Gateway(function_list(count, topics))
    with gateway.running():
        client = GatewayClient(
            GatewaySettings(gateway_url=f"http://127.0.0.1:{gateway.port}", upstream_timeout=120),
            max_inflight=4,
        )
        refresher = TopicMapRefresher(client, interval=3600)
        try:
            first = [await timed_refresh(refresher)]
            assert refresher.current.size == count, refresher.current.size
            same = [await timed_refresh(refresher) for _ in range(REBUILDS)]
            changed = []
            for extra in range(1, REBUILDS + 1):
                gateway.body = function_list(count, topics, extra)
                changed.append(await timed_refresh(refresher))
            assert refresher.builds == 1 + REBUILDS, refresher.builds
        finally:
            await client.close()
    size_mb = len(gateway.body) / 1e6
    print(f"{count:,} functions over {topics} topic(s), answer {size_mb:.1f} MB:")
    for label, rows in (("first", first), ("unchanged", same), ("changed", changed)):
        took = ", ".join(f"{t:.3f}" for t, _ in rows)
        stall = max(s for _, s in rows) * 1000
        print(f"  {label:>9} rebuild: {took} s; longest event-loop stall {stall:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", type=int, default=0, help="0: the two standard rows")
    parser.add_argument("--topics", type=int, default=1)
    args = parser.parse_args()
    if args.functions > MAX_FUNCTIONS:
        parser.error(f"--functions is bounded at {MAX_FUNCTIONS:,}")
    rows = [(args.functions, args.topics)] if args.functions else [(10_000, 1), (100_000, 100)]
    for count, topics in rows:
        asyncio.run(measure(count, topics))


if __name__ == "__main__":
    main()

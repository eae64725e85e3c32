"""Cron connector latency: from a slot's scheduled instant to the call reaching the function,
over many slots, on a clock running `--speed` times faster than real time. Not a test: prints
figures (in real milliseconds). Everything binds to 127.0.0.1.

    .venv/bin/python bench/cron.py --functions 100 --minutes 20 --speed 60
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.core.runner import serve
from connectors.core.settings import load_settings
from connectors.cron.config import CronConnectorConfig
from connectors.cron.connector import CronConnector
from tests.support.http import Call, FakeGateway


class FastClock:
    """Scheduled time that runs `speed` times faster than the monotonic clock."""

    def __init__(self, start: datetime, speed: float) -> None:
        self.start = start
        self.speed = speed
        self.origin = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self.origin) * self.speed)

    async def sleep_until(self, when: datetime) -> None:
        while (left := (when - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left / self.speed)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--functions", type=int, default=100)
    parser.add_argument("--minutes", type=int, default=20, help="scheduled minutes to run")
    parser.add_argument("--speed", type=float, default=60.0)
    args = parser.parse_args()
    # start just after a minute boundary so the first slot is a full minute away
    clock = FastClock(datetime(2026, 1, 1, 10, 0, 1, tzinfo=UTC), args.speed)
    latencies: list[float] = []

    async def record(call: Call) -> web.Response:
        slot = datetime.fromisoformat(call.headers["X-Cron-Scheduled-Time"].replace("Z", "+00:00"))
        latencies.append((clock.now() - slot).total_seconds() / args.speed)
        return web.Response(text="ok")

    gateway = await FakeGateway().start()
    for i in range(args.functions):
        gateway.subscribe(f"fn{i}", "cron-function", schedule="* * * * *")
        gateway.function(f"fn{i}", record)
    config = load_settings(
        CronConnectorConfig,
        {
            "gateway_url": gateway.url,
            "health_port": "0",
            "health_host": "127.0.0.1",
            "print_response": "false",
            "rebuild_interval": "1h",
        },
    )
    connector = CronConnector(config, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(connector, config.runtime, handle_signals=False, stop_event=stop)
    )
    await asyncio.sleep((args.minutes * 60 + 5) / args.speed)
    stop.set()
    await task
    await gateway.stop()
    missed = sum(
        s.value
        for m in connector.registry.collect()
        if m.name == "cron_slots_skipped"
        for s in m.samples
        if s.name.endswith("_total")
    )
    ms = sorted(v * 1000 for v in latencies)
    expected = args.functions * args.minutes
    print(f"{args.functions} functions x {args.minutes} slots, clock x{args.speed:g}")
    print(f"calls: {len(ms)} of {expected} slots, skipped: {missed:g}")
    if ms:
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        print(
            f"scheduled instant -> call at the function: p50 {statistics.median(ms):.2f} ms, "
            f"p99 {p99:.2f} ms, max {ms[-1]:.2f} ms (real time)"
        )


if __name__ == "__main__":
    asyncio.run(main())

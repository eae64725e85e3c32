"""Running the cron connector in-process on a `FakeClock`, and reading what it counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from connectors.core.runner import serve
from connectors.core.settings import load_settings
from connectors.cron.config import CronConnectorConfig
from connectors.cron.connector import CronConnector
from tests.support.clock import FakeClock
from tests.support.http import FakeGateway
from tests.support.ports import eventually


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def scheduled(gateway: FakeGateway, name: str) -> list[str]:
    return [c.headers["X-Cron-Scheduled-Time"] for c in gateway.calls_to(name)]


@asynccontextmanager
async def cron(gateway: FakeGateway, clock: FakeClock, **env: str) -> AsyncIterator[CronConnector]:
    config = load_settings(
        CronConnectorConfig,
        {
            "gateway_url": gateway.url,
            "health_port": "0",
            "health_host": "127.0.0.1",
            "rebuild_interval": "1s",
            "initial_retry_wait": "20ms",
            "max_retry_wait": "100ms",
            "max_retry_attempts": "3",
            "graceful_timeout": "5s",
            **env,
        },
    )
    connector = CronConnector(config, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(connector, config.runtime, handle_signals=False, stop_event=stop)
    )
    await eventually(lambda: connector.ready() or task.done(), 20, what="connector ready")
    assert not task.done(), f"connector exited with {task.result()}"
    try:
        yield connector
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


def sample(connector: CronConnector, name: str, **labels: str) -> float:
    return connector.registry.get_sample_value(name, labels) or 0.0


def skipped(connector: CronConnector, function: str, reason: str) -> float:
    """Slots of `function` (a bare name, in the default namespace) skipped for `reason`."""
    return sample(
        connector, "cron_slots_skipped_total", function=f"{function}.openfaas-fn", reason=reason
    )

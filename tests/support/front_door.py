"""`ferry gateway` under test: a functions file, the service in-process or as a child process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from connectors.core.runner import serve
from connectors.core.settings import load_settings
from gateway.config import GatewayConfig
from gateway.service import GatewayService
from tests.support.brokers import test_environ
from tests.support.ports import eventually, free_port, wait_for_port
from tests.support.queue import QueueUnderTest


def write_functions(path: Path, functions: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a functions file: name -> {url, namespace?, annotations?, labels?}."""
    items = [{"name": name, **spec} for name, spec in functions.items()]
    path.write_text(yaml.safe_dump({"functions": items}))
    return path


def gateway_env(queue: QueueUnderTest, **overrides: str) -> dict[str, str]:
    env = {
        "nats_url": queue.nats_url,
        "nats_stream": queue.stream,
        "dead_letter_stream": queue.dead_stream,
        "port": "0",
        "listen_host": "127.0.0.1",
        "health_port": "0",
        "health_host": "127.0.0.1",
        "callback_allow_private": "true",
        "refresh_interval": "200ms",
        "graceful_timeout": "5s",
    }
    env.update(overrides)
    return env


@asynccontextmanager
async def running_gateway(env: Mapping[str, str]) -> AsyncIterator[GatewayService]:
    """The gateway service in this process until the block ends (then drained, exit 0)."""
    config = load_settings(GatewayConfig, env)
    service = GatewayService(config)
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(service, config.runtime, handle_signals=False, stop_event=stop)
    )
    await eventually(lambda: service.ready() or task.done(), timeout=10, what="gateway ready")
    if task.done():
        raise AssertionError(f"gateway exited with {task.result()}")
    try:
        yield service
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 15) == 0


@asynccontextmanager
async def gateway_process(env: Mapping[str, str]) -> AsyncIterator[str]:
    """`ferry gateway` as a child process on a free port; yields its base URL."""
    port = free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry",
        "gateway",
        env=test_environ(**{**env, "port": str(port)}),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.to_thread(wait_for_port, port, 20.0)
        yield f"http://127.0.0.1:{port}"
    finally:
        if child.returncode is None:
            child.terminate()
        _, stderr = await asyncio.wait_for(child.communicate(), 15)
        assert child.returncode == 0, stderr.decode(errors="replace")


async def accept_many(
    front_door: GatewayService, count: int, function: str = "echo", **headers: str
) -> list[str]:
    """`count` async calls to `function` through the front door at once; their call ids."""
    async with aiohttp.ClientSession() as session:

        async def one() -> str:
            url = f"{front_door.url}/async-function/{function}"
            async with session.post(url, data=b"x", headers=headers) as response:
                assert response.status == 202
                return response.headers["X-Call-Id"]

        return list(await asyncio.gather(*(one() for _ in range(count))))

"""The queue worker as an operator sees it: bad config, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest

from tests.support.brokers import NatsServer, test_environ
from tests.support.http import FakeGateway
from tests.support.ports import eventually, free_port
from tests.support.queue import QueueUnderTest


async def run_worker(env: dict[str, str], timeout: float = 30) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry",
        "queue-worker",
        env=test_environ(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("max_inflight", "abc", "max_inflight='abc': expected a whole number"),
        ("max_inflight", "0", "max_inflight='0': must be between 1"),
        ("ack_wait", "5 parsecs", "ack_wait='5 parsecs'"),
        ("retry_http_codes", "500,abc", "retry_http_codes='500,abc'"),
        ("gateway_url", "ftp://x", "gateway_url='ftp://x': expected an http"),
        ("log_encoding", "xml", "log_encoding='xml': expected one of console, json"),
        ("write_debug", "maybe", "write_debug='maybe': expected true or false"),
        ("scaling_mode", "queue", "scaling_mode='queue': expected one of fair, static, function"),
        ("basic_auth", "true", "basic_auth=true but the credentials could not be read"),
    ],
)
async def test_a_bad_value_exits_2_with_one_line_naming_the_variable(
    variable: str, value: str, message: str, tmp_path: object
) -> None:
    env = {"nats_url": "nats://127.0.0.1:9", variable: value, "secret_mount_path": str(tmp_path)}
    code, stderr = await run_worker(env)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert message in lines[0]
    assert "Traceback" not in stderr


async def test_unreachable_nats_at_start_up_exits_2_with_one_line() -> None:
    port = free_port()
    env = {"nats_url": f"nats://127.0.0.1:{port}", "nats_connect_timeout": "1s", "health_port": "0"}
    code, stderr = await run_worker(env)
    assert code == 2
    assert stderr.strip().startswith(f"ferry: nats_url=nats://127.0.0.1:{port}: cannot connect")
    assert len(stderr.strip().splitlines()) == 1


async def test_help_lists_every_variable_with_its_default() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry",
        "queue-worker",
        "--help",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    from connectors.core.settings import env_names
    from queue_worker.config import QueueWorkerConfig

    for name in env_names(QueueWorkerConfig):
        assert name in text, name
    assert "max_inflight" in text and "[1]" in text
    assert "faas_nats_address" in text and "faas_gateway_port" in text


async def test_readyz_follows_the_nats_connection_and_metrics_are_served(
    gateway: FakeGateway,
) -> None:
    import nats

    server = NatsServer().start()
    try:
        nc = await nats.connect(server.url)
        queue = await QueueUnderTest(nc, server.url, gateway.url).setup()
        gateway.function("echo")
        await queue.publish("echo", b"x")
        async with queue.worker() as worker, aiohttp.ClientSession() as http:
            port = await _health_port(worker)
            base = f"http://127.0.0.1:{port}"
            await eventually(lambda: gateway.calls_to("echo"), what="the call")
            assert (await http.get(f"{base}/healthz")).status == 200
            assert (await http.get(f"{base}/readyz")).status == 200
            metrics = await (await http.get(f"{base}/metrics")).text()
            assert 'queue_worker_messages_processed_total{function="echo",status="200"} 1.0' in (
                metrics
            )
            for name in (
                "queue_worker_function_invocation_inflight",
                "queue_worker_pending_messages",
                "queue_worker_nats_reconnect_total",
                "queue_worker_invocation_duration_seconds_bucket",
            ):
                assert name in metrics, name
            await nc.close()
            server.stop()
            await eventually(
                lambda: _status(http, f"{base}/readyz", 503), what="not ready while disconnected"
            )
            assert (await http.get(f"{base}/healthz")).status == 200
            server.start()
            await eventually(
                lambda: _status(http, f"{base}/readyz", 200), 30, what="ready after reconnect"
            )
            metrics = await (await http.get(f"{base}/metrics")).text()
            assert "queue_worker_nats_reconnect_total 1.0" in metrics
            # and it takes work again: pull requests are renewed after the reconnect
            nc2 = await nats.connect(server.url)
            await nc2.jetstream().publish(
                queue.stream, b'{"Function": "echo", "Body": "YWdhaW4="}', stream=queue.stream
            )
            await eventually(lambda: len(gateway.calls_to("echo")) == 2, 30, what="a new call")
            assert gateway.calls_to("echo")[-1].body == b"again"
            await nc2.close()
    finally:
        server.cleanup()


async def _status(http: aiohttp.ClientSession, url: str, expected: int) -> bool:
    async with http.get(url) as response:
        return response.status == expected


async def _health_port(worker: object) -> int:
    """The port the in-process worker's health server bound (health_port=0)."""
    import gc

    from connectors.core.health import HealthServer

    for obj in gc.get_objects():
        if isinstance(obj, HealthServer) and obj.registry is worker.registry:  # type: ignore[attr-defined]
            return obj.port
    raise AssertionError("no health server found")

"""`ferry gateway` as a process: a queued call reaches a real function and calls back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from connectors.core.settings import iter_specs
from gateway.config import GatewayConfig
from tests.support import brokers
from tests.support.front_door import gateway_env, gateway_process, write_functions
from tests.support.http import CallbackReceiver, FakeGateway
from tests.support.queue import QueueUnderTest

pytestmark = pytest.mark.slow


async def test_async_call_through_the_gateway_process_is_invoked_and_called_back(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver, tmp_path: Path
) -> None:
    gateway.function("echo")
    functions = write_functions(
        tmp_path / "functions.yml", {"echo": {"url": f"{gateway.url}/function/echo"}}
    )
    async with gateway_process(gateway_env(queue, functions_file=str(functions))) as url:
        worker = await queue.spawn_worker(gateway_url=url)
        try:
            # one connection (a single-connection pool) for both requests, so the second is
            # handed from the lean path to aiohttp under the process's own loop (uvloop)
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.post(
                    f"{url}/async-function/echo/sub?x=1",
                    data=b"hello",
                    headers={"X-Callback-Url": receiver.url("/done")},
                ) as response:
                    assert response.status == 202
                    call_id = response.headers["X-Call-Id"]
                async with session.get(f"{url}/system/functions") as listed:
                    assert listed.status == 200
                    assert [f["name"] for f in await listed.json()] == ["echo"]
            (callback,) = await receiver.wait_for(1)
        finally:
            worker.terminate()
            _, stderr = await worker.communicate()
    assert worker.returncode == 0, stderr.decode(errors="replace")
    (call,) = gateway.calls_to("echo")
    assert (call.path, call.query, call.body) == ("/sub", "x=1", b"hello")
    assert call.headers["X-Call-Id"] == call_id
    assert callback.headers["X-Call-Id"] == call_id
    assert callback.headers["X-Function-Status"] == "200"
    assert callback.body == b"hello"


def run_gateway(**env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in brokers.test_environ().items()
        if k not in {"upstream_url", "functions_file"}
    }
    return subprocess.run(
        [sys.executable, "-m", "ferry", "gateway"],
        env={**base, "health_port": "0", "port": "0", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "exactly one of upstream_url"),
        ({"upstream_url": "ftp://x", "port": "0"}, "upstream_url"),
        ({"functions_file": "/nonexistent/functions.yml"}, "functions_file"),
        ({"upstream_url": "http://127.0.0.1:9", "max_body_bytes": "lots"}, "max_body_bytes"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(env: dict[str, str], needle: str) -> None:
    result = run_gateway(nats_url="nats://127.0.0.1:1", **env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle in result.stderr


def test_bad_functions_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "functions.yml"
    bad.write_text("functions:\n  - name: echo\n    url: not-a-url\n")
    result = run_gateway(nats_url="nats://127.0.0.1:1", functions_file=str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "function echo: url" in result.stderr


def test_help_lists_every_environment_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ferry", "gateway", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    for spec in iter_specs(GatewayConfig):
        assert f"  {spec.env}" in result.stdout, spec.env

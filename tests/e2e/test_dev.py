"""`ferry dev` starts the whole flow, serves the example async call with a callback, stops on ^C."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support import brokers
from tests.support.ports import free_port

pytestmark = pytest.mark.slow


async def read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> re.Match[str]:
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError("ferry dev closed its output; it printed:\n" + "".join(seen))
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match


async def test_dev_serves_the_example_call_with_a_callback_and_stops_on_sigint(
    tmp_path: Path,
) -> None:
    port = free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry",
        "dev",
        "--port",
        str(port),
        "--data",
        str(tmp_path / "dev"),
        env=brokers.test_environ(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    seen: list[str] = []
    try:
        curl = await asyncio.wait_for(
            read_until(
                child.stdout, r"curl -i (\S+/async-function/echo) -H 'X-Callback-Url: (\S+)'", seen
            ),
            30,
        )
        await asyncio.wait_for(read_until(child.stdout, r"^ready: ", seen), 10)
        url, callback = curl.groups()
        assert url == f"http://127.0.0.1:{port}/async-function/echo"
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url, data=b"hello ferry", headers={"X-Callback-Url": callback}
            ) as response,
        ):
            assert response.status == 202
            call_id = response.headers["X-Call-Id"]
        hit = await asyncio.wait_for(
            read_until(
                child.stdout, rf"callback\s+echo\s+call {call_id}\s+status (\d+).*body: (.*)", seen
            ),
            20,
        )
        assert hit.groups() == ("200", "hello ferry")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/system/info") as info,
        ):
            assert info.status == 200  # what `faas-cli version` and the OpenFaaS UI read
            provider = (await info.json())["provider"]
            assert (provider["provider"], provider["orchestration"]) == ("ferry", "standalone")
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 0, stderr.decode(errors="replace")
    assert b"Traceback" not in stderr
    functions = (tmp_path / "dev" / "functions.yml").read_text()
    assert "cron-function" in functions  # tick, fired every minute by the cron connector
    assert b"cron-connector started" in stderr


async def test_dev_on_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ferry",
            "dev",
            "--port",
            str(port),
            env=brokers.test_environ(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(child.communicate(), 30)
    finally:
        blocker.close()
    assert child.returncode == 2
    errors = [line for line in stderr.decode().splitlines() if line.startswith("ferry:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"ferry: port={port}: cannot listen: ")
    assert "in use" in errors[0]

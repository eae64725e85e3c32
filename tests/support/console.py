"""The web console under test: `ferry gateway` as a process with the console on, a queue worker
beside it, and an HTTP client that logs in and carries the CSRF cookie like a browser."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import aiohttp
from nats.js import JetStreamContext

from ledger.bucket import bucket_handle
from ledger.entries import CallEntry
from ledger.store import LedgerStore
from tests.support.front_door import gateway_env, write_functions
from tests.support.ports import free_port, wait_for_port
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest

USER = "admin"
PASSWORD = "console-s3cret"
PREFIX = "/system/console/"
TOKEN = re.compile(r'name="csrf" value="([^"]+)"')


def write_secrets(folder: Path, user: str = USER, password: str = PASSWORD) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "basic-auth-user").write_text(user)
    (folder / "basic-auth-password").write_text(password)
    return folder


@dataclass
class ConsoleStack:
    url: str  # the gateway's base URL
    queue: QueueUnderTest
    gateway: FerryProcess
    ledger_bucket: str

    @property
    def console(self) -> str:
        return self.url + PREFIX

    def session(self, *, auth: bool = True, password: str = PASSWORD) -> aiohttp.ClientSession:
        headers = {"Authorization": basic(USER, password)} if auth else {}
        jar = aiohttp.CookieJar(unsafe=True)  # 127.0.0.1 is an IP: keep its cookies
        return aiohttp.ClientSession(headers=headers, cookie_jar=jar)

    async def call(self, function: str, body: bytes, callback: str = "", **more: str) -> str:
        """An async call through the front door (which writes its `queued` entry); its id.
        `more`: other request headers (`X_Delay="3s"` sends `X-Delay: 3s`)."""
        headers = {"X-Callback-Url": callback} if callback else {}
        headers.update({name.replace("_", "-"): value for name, value in more.items()})
        async with aiohttp.ClientSession() as session:
            url = f"{self.url}/async-function/{function}"
            async with session.post(url, data=body, headers=headers) as answer:
                assert answer.status == 202, await answer.text()
                return answer.headers["X-Call-Id"]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@asynccontextmanager
async def console_stack(
    queue: QueueUnderTest,
    tmp_path: Path,
    functions: Mapping[str, Mapping[str, Any]],
    **env: str,
) -> AsyncIterator[ConsoleStack]:
    """`ferry gateway` in standalone mode with basic auth (so the console is on), its own
    ledger bucket; stopped with SIGTERM at the end (exit 0 expected)."""
    bucket = f"calls-{uuid.uuid4().hex[:8]}"
    port = free_port()
    secrets = write_secrets(tmp_path / "secrets")
    settings = gateway_env(
        queue,
        functions_file=str(write_functions(tmp_path / "functions.yml", functions)),
        basic_auth="true",
        secret_mount_path=str(secrets),
        call_ledger_bucket=bucket,
        port=str(port),
    )
    settings.update(env)
    process = await FerryProcess("gateway", settings).start()
    try:
        await _wait_for_port(port, process)
        yield ConsoleStack(f"http://127.0.0.1:{port}", queue, process, bucket)
    finally:
        status = await process.stop()
        output = process.output()
        await process.close()
        assert status == 0, output


async def _wait_for_port(port: int, process: FerryProcess) -> None:
    try:
        await asyncio.to_thread(wait_for_port, port, 20.0)
    except Exception as exc:
        raise AssertionError(f"gateway did not listen: {process.output()}") from exc


async def page(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url, allow_redirects=True) as response:
        return response.status, await response.text()


def csrf_of(html: str) -> str:
    found = TOKEN.search(html)
    assert found, "the page has no form with a CSRF token"
    return unescape(found.group(1))


async def ledger_entry(js: JetStreamContext, bucket: str, call_id: str) -> CallEntry | None:
    return await LedgerStore(bucket_handle(js, bucket), js, bucket).get(call_id)

"""A callback URL's query may carry a secret (`?token=...`): the receiver gets the URL whole,
but the call ledger (the HTTP route and `ferry calls get`) and the worker's log show only the
query's names."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.support.cli import ferry
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import CallbackReceiver, FakeGateway
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest


async def test_a_callback_urls_query_values_reach_the_receiver_but_not_the_ledger_nor_the_log(
    tmp_path: Path,
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    receiver: CallbackReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    gateway.function("echo")
    receiver.status = 404  # rejected: the worker logs the rejection, naming the URL
    functions = write_functions(
        tmp_path / "f.yml", {"echo": {"url": f"{gateway.url}/function/echo"}}
    )
    callback = receiver.url(f"/cb?token={secret}&plain=1")
    front_env = gateway_env(queue, functions_file=str(functions), **ledger.env())
    worker = FerryProcess("queue-worker", queue.env(write_debug="true", **ledger.env()))
    try:
        async with running_gateway(front_env) as front, aiohttp.ClientSession() as session:
            async with session.post(
                f"{front.url}/async-function/echo", data=b"x", headers={"X-Callback-Url": callback}
            ) as accepted:
                assert accepted.status == 202
                call_id = accepted.headers["X-Call-Id"]
            await worker.start()
            (received,) = await receiver.wait_for(1, timeout=60)
            done = await eventually(
                lambda: _finished(ledger, call_id), 30, what="the callback's outcome"
            )
            assert await worker.stop() == 0, worker.output()
            async with session.get(f"{front.url}/system/calls/{call_id}") as shown:
                route = await shown.text()
        log = worker.output()
    finally:
        await worker.close()
    cli = await ferry(
        "calls",
        "get",
        call_id,
        "--json",
        env={"nats_url": queue.nats_url, "nats_stream": queue.stream, **ledger.env()},
    )

    assert received.path == f"/cb?token={secret}&plain=1"  # the receiver gets it whole
    assert done.callback_outcome == "rejected"
    assert "rejected with 404" in log  # the line that names the URL was written
    redacted = receiver.url("/cb?token=redacted&plain=redacted")
    assert json.loads(route)["callback_url"] == redacted
    assert json.loads(cli.stdout)["callback_url"] == redacted
    for text in (route, cli.stdout, cli.stderr, log, caplog.text):
        assert secret not in text


async def _finished(ledger: LedgerUnderTest, call_id: str) -> object:
    entry = await ledger.get(call_id)
    return entry if entry is not None and entry.callback_outcome not in (None, "pending") else None

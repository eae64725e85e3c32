"""The console's call page says why a queued call waits (here: its function paused by hand),
read from the function-state bucket by a real `ferry gateway` process."""

from __future__ import annotations

import re
import uuid
from html import unescape
from pathlib import Path

from tests.support.console import console_stack, ledger_entry, page
from tests.support.http import FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest

WAITING = re.compile(r'<dd id="waiting">([^<]*)</dd>')


async def test_a_queued_call_of_a_paused_function_says_so_on_its_page(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    echo = {"echo": {"url": f"{gateway.url}/function/echo"}}
    bucket = f"fs-{uuid.uuid4().hex[:8]}"
    async with (
        console_stack(queue, tmp_path, echo, function_state_bucket=bucket) as stack,
        stack.session() as session,
    ):
        async with session.post(f"{stack.url}/system/queues/echo/pause") as answer:
            assert answer.status == 200
        call_id = await stack.call("echo", b"hi")  # no worker: it stays queued
        await eventually(
            lambda: ledger_entry(queue.js, stack.ledger_bucket, call_id), what="queued entry"
        )
        _, paused = await page(session, f"{stack.console}call?id={call_id}")
        async with session.post(f"{stack.url}/system/queues/echo/resume") as answer:
            assert answer.status == 200
        _, resumed = await page(session, f"{stack.console}call?id={call_id}")
    found = WAITING.search(paused)
    assert found, paused
    assert unescape(found.group(1)).startswith("function paused by hand since ")
    assert WAITING.search(resumed) is None

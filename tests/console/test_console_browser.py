"""The console in a real browser (headless Chromium) against a running stack: find a call by
id, cancel a queued call, replay a dead letter and see it succeed. Screenshots are kept in
build/console-screenshots; docs/console.md shows the ones this test made."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from ledger.entries import CallState
from tests.support.browser import Browser
from tests.support.console import PASSWORD, USER, basic, console_stack, ledger_entry
from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest

pytestmark = pytest.mark.slow

T = TypeVar("T")


async def _in_thread(step: Callable[..., T], *args: Any) -> T:
    """Selenium blocks: run each step beside the event loop that serves the worker."""
    return await asyncio.to_thread(step, *args)


async def test_find_cancel_and_replay_in_a_browser(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver, tmp_path: Path
) -> None:
    healthy = False

    async def flaky(call: Call) -> web.Response:
        return web.Response(text="ok") if healthy else web.Response(status=503, text="down")

    gateway.function("echo")
    gateway.function("flaky", flaky)
    functions: dict[str, dict[str, Any]] = {
        "echo": {"url": f"{gateway.url}/function/echo"},
        "flaky": {"url": f"{gateway.url}/function/flaky"},
        # a queue no worker here serves, so its calls stay queued until cancelled
        "report": {
            "url": f"{gateway.url}/function/report",
            "annotations": {"com.openfaas.queue": "nightly"},
        },
        "tick": {
            "url": f"{gateway.url}/function/tick",
            "annotations": {"topic": "cron-function", "schedule": "*/15 * * * *"},
        },
    }
    async with console_stack(queue, tmp_path, functions) as stack:
        worker_env = {
            "gateway_url": stack.url,
            "call_ledger_bucket": stack.ledger_bucket,
            "max_retry_attempts": "1",
        }
        async with queue.worker(**worker_env):
            done = await stack.call("echo", b"hello from the browser test", receiver.url())
            parked = await stack.call("report", b"weekly numbers")
            failing = await stack.call("flaky", b"try me", receiver.url())
            await receiver.wait_for(2)  # echo's success and flaky's failure
            await eventually(lambda: _dead(queue), what="flaky dead-lettered")

            browser = await _in_thread(Browser, basic(USER, PASSWORD))
            try:
                await _in_thread(browser.open, stack.console)
                await _in_thread(browser.wait_for_text, "accepted")
                await _in_thread(browser.screenshot, "overview")

                await _in_thread(_search, browser, done)
                shown = await _in_thread(browser.wait_for_text, "succeeded")
                assert done in shown and "hello from the browser test" in shown
                await _in_thread(browser.screenshot, "call")

                await _in_thread(_search, browser, parked)
                await _in_thread(browser.wait_for_text, "queued")
                await _in_thread(lambda: browser.find("#cancel").click())
                await _in_thread(browser.wait_for_text, "cancelled: the call will not run")
                await _in_thread(browser.screenshot, "cancelled")
                entry = await ledger_entry(queue.js, stack.ledger_bucket, parked)
                assert entry is not None and entry.state is CallState.CANCELLED

                await _in_thread(browser.open, stack.console + "dead-letters")
                await _in_thread(browser.wait_for_text, failing)
                await _in_thread(browser.screenshot, "dead-letters")
                healthy = True
                await _in_thread(lambda: browser.find("button.replay").click())
                await _in_thread(browser.wait_for_text, "Replay 1 dead letter?")
                await _in_thread(lambda: browser.find("#confirm").click())
                await _in_thread(browser.wait_for_text, "replay: 1 of 1 done")
                await _in_thread(_search, browser, failing)
                await _in_thread(browser.wait_for_text, "succeeded", 20.0, True)
                await _in_thread(browser.screenshot, "replayed")

                await _in_thread(browser.open, stack.console + "functions")
                await _in_thread(browser.wait_for_text, "report")  # the parked call's function
                await _in_thread(browser.screenshot, "functions")

                await _in_thread(browser.open, stack.console + "schedules")
                await _in_thread(browser.wait_for_text, "*/15 * * * *")
                await _in_thread(browser.screenshot, "schedules")
            finally:
                await _in_thread(browser.close)
        entry = await ledger_entry(queue.js, stack.ledger_bucket, failing)
        assert entry is not None and entry.state is CallState.SUCCEEDED
        assert "console: admin cancelled call " + parked in stack.gateway.output()


def _search(browser: Browser, call_id: str) -> None:
    box = browser.find("header .search input[name=id]")
    box.clear()
    box.send_keys(call_id)
    browser.find("header .search button").click()


async def _dead(queue: QueueUnderTest) -> bool:
    return len(await queue.dead_letters()) == 1

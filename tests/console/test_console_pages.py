"""The web console served by a real `ferry gateway` process, against real NATS and a real
worker: every page, every action, credentials, CSRF and hostile values."""

from __future__ import annotations

import asyncio
import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import aiohttp
import nats.js.errors
import pytest
from aiohttp import web

from asyncq.jetstream import add_function_subjects
from asyncq.schedule import schedule_subject
from ledger.entries import CallState
from tests.support.console import (
    PASSWORD,
    PREFIX,
    USER,
    basic,
    console_stack,
    csrf_of,
    ledger_entry,
    page,
    write_secrets,
)
from tests.support.http import Call, CallbackReceiver, FakeGateway, held_until
from tests.support.ports import eventually, free_port, wait_for_port
from tests.support.procs import FerryProcess, run_to_exit
from tests.support.queue import QueueUnderTest

pytestmark = pytest.mark.slow

PAGES = ("", "functions", "calls", "dead-letters", "schedules")
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def _closing_get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session:
        return await page(session, url)


async def _post(session: aiohttp.ClientSession, url: str, form: dict[str, str]) -> tuple[int, str]:
    async with session.post(url, data=form, allow_redirects=True) as response:
        return response.status, await response.text()


async def test_every_page_and_action_asks_for_the_gateway_credentials(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    gateway.function("echo")
    echo = {"echo": {"url": f"{gateway.url}/function/echo"}}
    async with console_stack(queue, tmp_path, echo) as stack:
        async with stack.session(auth=False) as anonymous:
            for name in PAGES:
                status, _ = await page(anonymous, stack.console + name)
                assert status == 401, name
            async with anonymous.post(stack.console + "call/cancel", data={"id": "x"}) as answer:
                assert answer.status == 401
                assert answer.headers["WWW-Authenticate"].startswith("Basic")
        async with stack.session(password="not-the-password") as session:
            status, _ = await page(session, stack.console)
            assert status == 401
        async with stack.session() as session:
            for name in PAGES:
                status, html = await page(session, stack.console + name)
                assert status == 200, (name, html)
                assert "ferry" in html


async def test_the_console_is_off_without_credentials_unless_asked_for(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    echo = {"echo": {"url": f"{gateway.url}/function/echo"}}
    async with console_stack(queue, tmp_path / "a", echo, basic_auth="false") as stack:
        status, _ = await _closing_get(stack.session(auth=False), stack.console)
        assert status == 404
    async with console_stack(
        queue, tmp_path / "b", echo, basic_auth="false", console_enabled="true"
    ) as stack:
        async with stack.session(auth=False) as session:
            status, html = await page(session, stack.console)
            assert status == 200
            assert "anonymous" in html
        assert "has no credentials" in stack.gateway.output()


async def test_a_post_without_the_right_csrf_token_changes_nothing(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    echo = {"echo": {"url": f"{gateway.url}/function/echo"}}
    async with console_stack(queue, tmp_path, echo) as stack:
        call_id = await stack.call("echo", b"hi")  # no worker: it stays queued
        async with stack.session() as session:
            await eventually(
                lambda: ledger_entry(queue.js, stack.ledger_bucket, call_id), what="queued entry"
            )
            status, html = await page(session, f"{stack.console}call?id={call_id}")
            assert status == 200 and 'id="cancel"' in html
            for form in ({"id": call_id}, {"id": call_id, "csrf": "x" * 43}):
                status, text = await _post(session, stack.console + "call/cancel", form)
                assert status == 403, text
        async with stack.session() as other:  # a cross-site form carries no cookie of ours
            form = {"id": call_id, "csrf": csrf_of(html)}
            status, _ = await _post(other, stack.console + "call/cancel", form)
            assert status == 403
        entry = await ledger_entry(queue.js, stack.ledger_bucket, call_id)
        assert entry is not None and entry.state is CallState.QUEUED


async def test_cancel_from_a_call_page_and_the_call_never_runs(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver, tmp_path: Path
) -> None:
    gateway.function("echo")
    echo = {"echo": {"url": f"{gateway.url}/function/echo"}}
    async with console_stack(queue, tmp_path, echo) as stack:
        doomed = await stack.call("echo", b"doomed", receiver.url("/doomed"))
        async with stack.session() as session:
            await eventually(
                lambda: ledger_entry(queue.js, stack.ledger_bucket, doomed), what="queued entry"
            )
            _, html = await page(session, f"{stack.console}call?id={doomed}")
            form = {"id": doomed, "csrf": csrf_of(html)}
            status, after = await _post(session, stack.console + "call/cancel", form)
        assert status == 200
        assert "cancelled: the call will not run" in after
        assert "st-cancelled" in after
        later = await stack.call("echo", b"later", receiver.url("/later"))
        async with queue.worker(gateway_url=stack.url, call_ledger_bucket=stack.ledger_bucket):
            (done,) = await receiver.wait_for(1)
            assert done.headers["X-Call-Id"] == later
            await eventually(queue.drained, what="queue drained")
        assert "console: admin cancelled call " + doomed in stack.gateway.output()
    assert [c.body for c in gateway.calls_to("echo")] == [b"later"]


async def test_cancel_of_a_delayed_call_from_its_page_removes_it_from_the_stream(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver, tmp_path: Path
) -> None:
    gateway.function("echo")
    echo = {"echo": {"url": f"{gateway.url}/function/echo"}}
    async with console_stack(queue, tmp_path, echo) as stack:
        env = {"gateway_url": stack.url, "call_ledger_bucket": stack.ledger_bucket}
        async with queue.worker(**env), stack.session() as session:
            doomed = await stack.call("echo", b"doomed", receiver.url("/doomed"), X_Delay="2s")
            later = await stack.call("echo", b"later", receiver.url("/later"), X_Delay="3s")
            _, html = await page(session, f"{stack.console}call?id={doomed}")
            assert "scheduled" in html and "due" in html
            form = {"id": doomed, "csrf": csrf_of(html)}
            status, after = await _post(session, stack.console + "call/cancel", form)
            assert status == 200 and "will not run" in after
            with pytest.raises(nats.js.errors.NotFoundError):  # the waiting message is gone
                await queue.js.get_last_msg(queue.stream, schedule_subject(queue.stream, doomed))
            (done,) = await receiver.wait_for(1)  # the later call fired after the cancelled one
            assert done.headers["X-Call-Id"] == later
    assert [c.body for c in gateway.calls_to("echo")] == [b"later"]


async def test_replay_and_purge_ask_for_confirmation_then_act(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver, tmp_path: Path
) -> None:
    healthy = False

    async def flaky(call: Call) -> web.Response:
        return web.Response(text="ok") if healthy else web.Response(status=500, text="down")

    gateway.function("flaky", flaky)
    functions = {"flaky": {"url": f"{gateway.url}/function/flaky"}}
    async with console_stack(queue, tmp_path, functions) as stack:
        worker_env = {
            "gateway_url": stack.url,
            "call_ledger_bucket": stack.ledger_bucket,
            "max_retry_attempts": "1",
        }
        async with queue.worker(**worker_env), stack.session() as session:
            first = await queue.publish("flaky", b"one", callback_url=receiver.url("/one"))
            second = await queue.publish("flaky", b"two")
            await eventually(lambda: _count(queue, 2), what="two dead letters")
            _, listing = await page(session, stack.console + "dead-letters")
            assert first.call_id in listing and second.call_id in listing
            token = csrf_of(listing)
            seqs = [s for s, c in await _letters(stack.console, session) if c == first.call_id]
            status, confirm = await _post(
                session, stack.console + "dead-letters/replay", {"seq": seqs[0], "csrf": token}
            )
            assert status == 200 and 'id="confirm"' in confirm
            assert len(await queue.dead_letters()) == 2  # nothing replayed yet
            healthy = True
            form = {"seq": seqs[0], "csrf": token, "confirm": "yes"}
            status, done = await _post(session, stack.console + "dead-letters/replay", form)
            assert status == 200 and "replay: 1 of 1 done" in done
            callbacks = await receiver.wait_for(2)  # the failure's, then the replayed success
            assert callbacks[-1].headers["X-Function-Status"] == "200"
            form = {"function": "flaky", "csrf": token, "confirm": "yes"}
            status, purged = await _post(session, stack.console + "dead-letters/purge", form)
            assert status == 200 and "purge: 1 of 1 done" in purged
            assert await queue.dead_letters() == []
        output = stack.gateway.output()
        assert f"console: admin replayed dead letter {seqs[0]} (1 done)" in output
        assert "console: admin purged 1 dead letters of flaky (1 done)" in output


async def test_hostile_values_are_shown_as_text_and_secrets_not_at_all(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    async def hostile(call: Call) -> web.Response:
        return web.Response(text=HOSTILE, content_type="text/html")

    gateway.function("echo", hostile)
    echo = {"echo": {"url": f"{gateway.url}/function/echo"}}
    async with console_stack(queue, tmp_path, echo) as stack:
        env = {"gateway_url": stack.url, "call_ledger_bucket": stack.ledger_bucket}
        async with queue.worker(**env, max_retry_attempts="1"), stack.session() as session:
            answered = await queue.publish("echo", b"x")
            raw = {
                "Function": HOSTILE,
                "Body": "PHNjcmlwdD4=",
                "Header": {"Authorization": ["Bearer top-secret-token"], "X-Call-Id": ["h1"]},
                "CallbackUrl": "http://127.0.0.1:9/cb?token=also-secret",
            }
            await queue.publish_raw(json.dumps(raw).encode())
            await eventually(lambda: _count(queue, 1), what="the hostile message dead-lettered")
            entry = await eventually(
                lambda: _finished(queue, stack.ledger_bucket, answered.call_id), what="finished"
            )
            assert entry.result is not None and entry.result.body == HOSTILE.encode()
            pages = [
                await page(session, f"{stack.console}call?id={answered.call_id}"),
                await page(session, stack.console + "dead-letters"),
                await page(session, stack.console + "calls"),
            ]
            (seq,) = [s for s, _ in await _letters(stack.console, session)]
            pages.append(await page(session, f"{stack.console}dead-letter?seq={seq}"))
            for status, html in pages:
                assert status == 200
                assert "<script>" not in html and "<img src=x" not in html
                assert "top-secret-token" not in html and "also-secret" not in html
            assert "&lt;script&gt;" in pages[0][1]  # the stored answer, as text
            assert "&lt;img src=x onerror=alert(1)&gt;" in pages[1][1]  # the function name
            async with session.get(f"{stack.console}call/result?id={answered.call_id}") as got:
                assert got.headers["Content-Type"] == "application/octet-stream"
                assert got.headers["Content-Disposition"].startswith("attachment")
                assert got.headers["X-Content-Type-Options"] == "nosniff"
                assert "script-src 'self'" in got.headers["Content-Security-Policy"]
                assert await got.read() == HOSTILE.encode()


async def test_functions_show_what_waits_and_what_workers_hold(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    release = asyncio.Event()
    gateway.function("echo", held_until(release))
    echo = {"echo": {"url": f"{gateway.url}/function/echo"}}
    # as once a fair worker has run: the front door stores calls on their function's subject
    await add_function_subjects(queue.js, queue.stream, queue.stream)
    async with console_stack(queue, tmp_path, echo) as stack:
        env = {"gateway_url": stack.url, "call_ledger_bucket": stack.ledger_bucket}
        async with queue.worker(max_inflight="1", **env), stack.session() as session:
            for i in range(4):
                await stack.call("echo", b"%d" % i)
            await eventually(lambda: len(gateway.calls_to("echo")) == 1, what="one call held")

            async def shown() -> str:
                _, html = await page(session, stack.console + "functions")
                return html if re.search(r">echo</a></td>\s*<td>4</td><td>1</td>", html) else ""

            assert await eventually(shown, what="echo: 4 waiting, 1 held")
            release.set()


async def test_pause_and_resume_from_the_functions_page(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver, tmp_path: Path
) -> None:
    gateway.function("echo")
    gateway.function("other")
    functions = {name: {"url": f"{gateway.url}/function/{name}"} for name in ("echo", "other")}
    async with console_stack(queue, tmp_path, functions) as stack:
        env = {"gateway_url": stack.url, "call_ledger_bucket": stack.ledger_bucket}
        async with stack.session() as session:
            _, html = await page(session, stack.console + "functions")
            form = {"function": "echo", "csrf": csrf_of(html)}
            status, after = await _post(session, stack.console + "functions/pause", form)
            assert status == 200 and "echo: paused" in after
            assert re.search(r">echo</a> <strong>paused</strong>", after)
            async with queue.worker(**env):
                await stack.call("echo", b"held", receiver.url("/echo"))
                await stack.call("other", b"runs", receiver.url("/other"))
                (done,) = await receiver.wait_for(1)  # the other function runs meanwhile
                assert done.path == "/other" and gateway.calls_to("echo") == []
                status, after = await _post(session, stack.console + "functions/resume", form)
                assert status == 200 and "echo: resumed" in after
                await receiver.wait_for(2)
        assert "console: admin paused function echo" in stack.gateway.output()
    assert [c.body for c in gateway.calls_to("echo")] == [b"held"]


async def test_schedules_show_next_slots_and_bad_schedules(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    functions: dict[str, dict[str, Any]] = {
        "tick": {
            "url": f"{gateway.url}/function/tick",
            "annotations": {"topic": "cron-function", "schedule": "*/5 * * * *"},
        },
        "broken": {
            "url": f"{gateway.url}/function/broken",
            "annotations": {"topic": "cron-function", "schedule": "61 * * * *"},
        },
        "plain": {"url": f"{gateway.url}/function/plain"},
    }
    async with console_stack(queue, tmp_path, functions) as stack, stack.session() as session:
        status, html = await page(session, stack.console + "schedules")
    assert status == 200
    assert "tick.openfaas-fn" in html and "<code>*/5 * * * *</code>" in html
    assert html.count(":00 UTC") + html.count(":05 UTC") + html.count(":10 UTC") >= 1
    assert "broken.openfaas-fn" in html and 'class="error"' in html
    assert "plain" not in html


async def _count(queue: QueueUnderTest, wanted: int) -> bool:
    return len(await queue.dead_letters()) >= wanted


async def _finished(queue: QueueUnderTest, bucket: str, call_id: str) -> object:
    entry = await ledger_entry(queue.js, bucket, call_id)
    return entry if entry is not None and entry.state.final else None


async def _letters(console: str, session: aiohttp.ClientSession) -> list[tuple[str, str]]:
    """(seq, call id) of each row of the dead-letters page."""
    _, html = await page(session, console + "dead-letters")
    row = re.compile(r'dead-letter\?seq=(\d+)">\d+</a></td>\s*<td>(?:<a href="[^"]*">([^<]*)</a>)?')
    return [(seq, unescape(call)) for seq, call in row.findall(html)]


async def test_ferry_console_alone_refuses_to_start_without_credentials(
    queue: QueueUnderTest,
) -> None:
    code, output = await run_to_exit("console", queue.env(port="0"))
    assert code == 2
    assert output.count("\n") == 0 and "basic_auth=true" in output, output


async def test_ferry_console_alone_serves_the_pages_from_nats_and_the_gateway_list(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    gateway.functions.append(
        {
            "name": "tick",
            "namespace": "openfaas-fn",
            "annotations": {"topic": "cron-function", "schedule": "@every 30s"},
        }
    )
    port = free_port()
    env = queue.env(
        port=str(port),
        listen_host="127.0.0.1",
        basic_auth="true",
        secret_mount_path=str(write_secrets(tmp_path / "secrets")),
    )
    console = await FerryProcess("console", env).start()
    try:
        await asyncio.to_thread(wait_for_port, port, 20.0)
        headers = {"Authorization": basic(USER, PASSWORD)}
        async with aiohttp.ClientSession(headers=headers) as session:
            status, html = await page(session, f"http://127.0.0.1:{port}/")
            assert status == 200 and "The last hour" in html
            status, html = await page(session, f"http://127.0.0.1:{port}{PREFIX}schedules")
            assert status == 200 and "tick" in html and "@every 30s" in html
        async with aiohttp.ClientSession() as anonymous:
            status, _ = await page(anonymous, f"http://127.0.0.1:{port}{PREFIX}calls")
            assert status == 401
    finally:
        assert await console.stop() == 0, console.output()
        await console.close()

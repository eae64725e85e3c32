"""A call whose X-Start-Time is not plain digits (`²`, another script's digits, 40 of them)
runs once and its ledger entries are written, with no queued time (the time was unreadable)."""

from __future__ import annotations

from aiohttp import web

from tests.support.http import FakeGateway
from tests.support.ledger import LedgerUnderTest
from tests.support.queue import QueueUnderTest


async def test_calls_with_hostile_start_times_run_once_and_the_worker_stays_up(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    gateway.function("echo", lambda call: web.Response(text="ran"))
    sent = [
        await queue.publish("echo", b"x", headers=[("X-Start-Time", text)])
        for text in ("²", "١٢٣", "9" * 40)
    ]
    async with queue.worker(**ledger.env()):
        for request in sent:
            entry = await ledger.wait_for_state(request.call_id, "succeeded")
            assert entry.queued_at is None
    assert sorted(c.headers["X-Call-Id"] for c in gateway.calls_to("echo")) == sorted(
        r.call_id for r in sent
    )

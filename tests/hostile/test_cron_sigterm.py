"""Finding 2 of issue 24: SIGTERM stops a busy cron connector at once, whatever happens inside
the NATS client when its tasks are cancelled.

The worst moment is just after a slot came due: hundreds of claims are on their way to NATS
and hundreds of calls wait for a free slot. A real `ferry cron-connector` process, claims in a
real nats-server, a real function server that notes when each call arrives; SIGTERM right
after the first call of a slot arrives, in several rounds, some with a second SIGTERM; one
function never answers. Each round the process exits 0 within `graceful_timeout` (and a small
margin), and no call arrives after the process could act on the signal, nor for a slot whose
instant is after it.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from datetime import UTC, datetime

import pytest
from aiohttp import web

from tests.support.brokers import NatsServer
from tests.support.http import Call, FakeGateway, held_until
from tests.support.ports import eventually
from tests.support.procs import FerryProcess

pytestmark = pytest.mark.slow

FUNCTIONS = 300
MAX_INFLIGHT = 32
# Each call takes this long, so a slot's calls go out in waves of MAX_INFLIGHT: the waves
# still waiting when SIGTERM comes would reach the functions a whole CALL_TIME after it.
CALL_TIME = 2.0
# Each round signals at a different moment after the slot's first call arrived (claims still
# on their way to NATS, then calls waiting for a free max_inflight slot), some twice.
ROUNDS = ((0.0, False), (0.01, True), (0.03, False), (0.1, True))
GRACEFUL_TIMEOUT = 3.0
EXIT_MARGIN = 2.5  # cutting the held call short, closing NATS and the health port, exiting
# A call sent in the same few event-loop turns as the signal's arrival may land just after
# it (and this process, busy serving the calls, may note it late); a call noted later than
# this was started after the process knew it had to stop.
SIGNAL_SEEN = 1.0


def _slot(scheduled: str) -> datetime:
    return datetime.fromisoformat(scheduled.replace("Z", "+00:00"))


async def _one_round(
    gateway: FakeGateway, nats_server: NatsServer, delay: float, twice: bool
) -> None:
    gateway.calls.clear()
    proc = await FerryProcess(
        "cron-connector",
        {
            "gateway_url": gateway.url,
            "nats_url": nats_server.url,
            "cron_kv_bucket": f"cron-{uuid.uuid4().hex[:8]}",
            "health_port": "0",
            "health_host": "127.0.0.1",
            "graceful_timeout": f"{GRACEFUL_TIMEOUT}s",
            "upstream_timeout": "10s",
            "max_inflight": str(MAX_INFLIGHT),
        },
    ).start()
    assert proc.process is not None
    try:
        # the worst moment: a slot just came due (the first since start-up, when every schedule
        # is followed), its claims are on their way, its first calls are arriving
        await eventually(lambda: gateway.calls, 60, 0.002, what="the first call of a slot")
        await asyncio.sleep(delay)
        signalled_at, signalled_wall = time.monotonic(), datetime.now(UTC)
        proc.process.send_signal(signal.SIGTERM)
        if twice:
            await asyncio.sleep(0.05)
            proc.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.process.wait(), GRACEFUL_TIMEOUT + EXIT_MARGIN)
        except TimeoutError:
            since = sum(1 for c in gateway.calls if c.at > signalled_at + SIGNAL_SEEN)
            pytest.fail(
                f"still running {GRACEFUL_TIMEOUT + EXIT_MARGIN}s after SIGTERM, "
                f"{since} calls since; it said: {proc.output()[-1500:]}"
            )
        exited_after = time.monotonic() - signalled_at
        assert code == 0, proc.output()[-3000:]
        late = [c for c in gateway.calls if c.at > signalled_at + SIGNAL_SEEN]
        assert not late, (
            f"{len(late)} calls arrived more than {SIGNAL_SEEN}s after SIGTERM, the last "
            f"{max(c.at for c in late) - signalled_at:.2f}s after; exited after {exited_after:.2f}s"
        )
        after = [
            c for c in gateway.calls if _slot(c.headers["X-Cron-Scheduled-Time"]) > signalled_wall
        ]
        assert not after, f"{len(after)} calls for slots after SIGTERM"
    finally:
        await proc.close()


async def test_sigterm_just_after_a_slot_stops_every_firing_and_exits_in_time(
    gateway: FakeGateway, nats_server: NatsServer
) -> None:
    never = asyncio.Event()

    async def takes_a_while(call: Call) -> web.Response:
        await asyncio.sleep(CALL_TIME)
        return web.Response(text="done")

    for i in range(FUNCTIONS):
        gateway.subscribe(f"tick{i}", "cron-function", schedule="@every 1s")
        gateway.function(f"tick{i}", takes_a_while)
    gateway.subscribe("stuck", "cron-function", schedule="@every 1s")
    gateway.function("stuck", held_until(never))  # its call outlives graceful_timeout
    try:
        for delay, twice in ROUNDS:
            await _one_round(gateway, nats_server, delay, twice)
    finally:
        never.set()

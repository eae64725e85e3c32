"""Finding 9 of issue 24: a cron replica killed in the middle of a call frees its function
within seconds, and the slots the survivor skips meanwhile are counted, not logged one by one.

Two real `ferry cron-connector` processes share claims in a real nats-server under
`concurrency_policy=forbid`; the function holds its first call. The replica that made that
call is SIGKILLed: the survivor must invoke the function again within a few seconds (a busy
mark that lasted `upstream_timeout` times the attempts blocked it for half an hour). While the
holder lives, its lease is renewed: nobody starts a second call for longer than a lease lasts.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import nats
import pytest
from aiohttp import web

from connectors.cron.claims import claim_key
from tests.support.brokers import NatsServer
from tests.support.http import Call, FakeGateway
from tests.support.ports import eventually
from tests.support.procs import FerryProcess

pytestmark = pytest.mark.slow

FUNCTION = "long.openfaas-fn"
FREED_WITHIN = 15.0  # the lease (6 s), a slot (1 s), and room for a loaded machine
SKIP_LINE = "skipping the slot"
PORT_LINE = re.compile(r"health and metrics on port (\d+)")
SKIPS_BEFORE_KILL = 8  # at one slot a second, longer than a 6 s lease lasts unrenewed


@asynccontextmanager
async def replica(env: dict[str, str]) -> AsyncIterator[FerryProcess]:
    proc = await FerryProcess("cron-connector", env).start()
    try:
        yield proc
    finally:
        await proc.close()


def health_port(proc: FerryProcess) -> int:
    found = PORT_LINE.search(proc.output())
    assert found, proc.output()
    return int(found.group(1))


def forbid_skips(proc: FerryProcess) -> float:
    url = f"http://127.0.0.1:{health_port(proc)}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    label = f'cron_slots_skipped_total{{function="{FUNCTION}",reason="forbid"}} '
    lines = [line for line in text.splitlines() if line.startswith(label)]
    return float(lines[0].split()[-1]) if lines else 0.0


async def slot_owner(nats_url: str, bucket: str, call: Call) -> str:
    """Which replica claimed the slot of `call` (the claim holds the replica's name)."""
    unix_ms = int(call.headers["X-Call-Id"].rsplit(":", 1)[1])
    client = await nats.connect(nats_url)
    try:
        kv = await client.jetstream().key_value(bucket)
        entry = await kv.get(claim_key(FUNCTION, unix_ms))
        return (entry.value or b"").decode()
    finally:
        await client.close()


async def test_a_killed_replica_frees_its_function_within_seconds(
    gateway: FakeGateway, nats_server: NatsServer
) -> None:
    release = asyncio.Event()

    async def first_call_held(call: Call) -> web.Response:
        if len(gateway.calls_to("long")) == 1:
            await release.wait()
        return web.Response(text="done")

    gateway.subscribe("long", "cron-function", schedule="@every 1s")
    gateway.function("long", first_call_held)
    bucket = f"cron-{uuid.uuid4().hex[:8]}"
    env = {
        "gateway_url": gateway.url,
        "nats_url": nats_server.url,
        "cron_kv_bucket": bucket,
        "concurrency_policy": "forbid",
        "upstream_timeout": "60s",
        "health_port": "0",
        "health_host": "127.0.0.1",
    }
    try:
        async with AsyncExitStack() as stack:
            replicas = [await stack.enter_async_context(replica(env)) for _ in range(2)]
            for each in replicas:
                await eventually(lambda r=each: PORT_LINE.search(r.output()), 60, what="start")
            (held,) = await eventually(lambda: gateway.calls_to("long"), 60, what="a first call")
            owner = await slot_owner(nats_server.url, bucket, held)
            (holder,) = [r for r in replicas if r.process and f"-{r.process.pid}-" in owner]
            (survivor,) = [r for r in replicas if r is not holder]
            # the replicas claim slots the holder's call blocks, for longer than a lease lasts
            # unless renewed: each skip counted, and no second call meanwhile
            await eventually(
                lambda: (
                    sum(forbid_skips(r) for r in replicas) >= SKIPS_BEFORE_KILL
                    and forbid_skips(survivor) >= 1
                ),
                60,
                what="skips on both sides",
            )
            assert len(gateway.calls_to("long")) == 1
            await holder.kill()
            killed_at = time.monotonic()
            await eventually(
                lambda: len(gateway.calls_to("long")) >= 2,
                FREED_WITHIN,
                what=f"the survivor's call within {FREED_WITHIN}s of the kill",
            )
            freed_after = gateway.calls_to("long")[1].at - killed_at
            assert freed_after < FREED_WITHIN
            output = survivor.output()
            assert output.count(SKIP_LINE) == 1, output  # one line a minute, however many skips
            assert FUNCTION in output
    finally:
        release.set()

"""Finding 1 of round 3: the call ledger shares JetStream's storage with the request stream,
and once its entries (with answers of up to 64 KiB, kept a day) filled it, every new call got
503 "insufficient resources" until they expired. The ledger's bucket is bounded now, oldest
entries first: a flood of calls with big stored answers keeps intake answering 202 and every
call runs, well past the point where the unbounded bucket filled the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import nats
import pytest
from aiohttp import web
from nats.js import api

from ledger.entries import CallEntry
from ledger.store import LedgerStore
from tests.support.brokers import NatsServer
from tests.support.front_door import (
    gateway_env,
    gateway_process,
    running_gateway,
    write_functions,
)
from tests.support.http import FakeGateway
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest

STORE = 24 * 1024 * 1024  # the server's whole file store
LEDGER = 8 * 1024 * 1024  # call_ledger_max_bytes: a third of it
ANSWER = 60_000  # stored (at most 1/128 of the bucket, 65,536 bytes), ~80 KB an entry
CALLS = 600  # ~48 MB of entries: the unbounded bucket filled the store after ~280 calls
WAVE = 100


@pytest.fixture
def small_nats() -> Iterator[NatsServer]:
    server = NatsServer.with_config(f"jetstream {{ max_file_store: {STORE} }}\n").start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
async def small_queue(
    small_nats: NatsServer, gateway: FakeGateway
) -> AsyncIterator[QueueUnderTest]:
    nc = await nats.connect(small_nats.url)
    try:
        yield await QueueUnderTest(nc, small_nats.url, gateway.url).setup()
    finally:
        await nc.close()


async def test_a_flood_of_big_stored_answers_never_stops_intake(
    small_queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    queue = small_queue
    gateway.function("big", lambda call: web.Response(body=b"a" * ANSWER))
    functions = write_functions(tmp_path / "f.yml", {"big": {"url": f"{gateway.url}/function/big"}})
    bucket = "faas-calls-flood"
    ledger_env = {"call_ledger_bucket": bucket, "call_ledger_max_bytes": str(LEDGER)}
    worker = await FerryProcess("queue-worker", queue.env(**ledger_env)).start()
    try:
        env = gateway_env(queue, functions_file=str(functions), **ledger_env)
        async with gateway_process(env) as url, aiohttp.ClientSession() as session:
            for wave in range(1, CALLS // WAVE + 1):  # each wave run before the next is sent
                statuses = await _flood(session, f"{url}/async-function/big", WAVE)
                assert statuses == {202: WAVE}, f"wave {wave}"
                await eventually(
                    lambda: len(gateway.calls_to("big")) >= wave * WAVE,  # noqa: B023
                    timeout=60,
                    what=f"wave {wave} run",
                )
            await eventually(queue.drained, timeout=30, what="the queue drained")
            # the ledger still works: the last call has its answer, and the bucket its bound
            async with session.post(f"{url}/async-function/big", data=b"x") as answer:
                assert answer.status == 202
                call_id = answer.headers["X-Call-Id"]
            store = LedgerStore(await queue.js.key_value(bucket), queue.js, bucket)
            entry = await eventually(lambda: _succeeded(store, call_id), what="the last call")
            assert entry.result is not None and len(entry.result.body) == ANSWER
            info = await queue.js.stream_info(f"KV_{bucket}")
            assert 0 < info.state.bytes <= LEDGER
    finally:
        assert await worker.stop() == 0, worker.output()
    assert len(gateway.calls_to("big")) == CALLS + 1  # each call ran once


async def _flood(session: aiohttp.ClientSession, url: str, count: int) -> dict[int, int]:
    """POST `count` calls, 16 at a time; how many got each status."""
    statuses: dict[int, int] = {}
    sent = iter(range(count))

    async def client() -> None:
        for _ in sent:
            async with session.post(url, data=b"x") as answer:
                await answer.read()
                statuses[answer.status] = statuses.get(answer.status, 0) + 1

    await asyncio.gather(*(client() for _ in range(16)))
    return statuses


async def _succeeded(store: LedgerStore, call_id: str) -> CallEntry | None:
    entry = await store.get(call_id)
    return entry if entry is not None and entry.state.value == "succeeded" else None


async def test_a_bucket_the_server_will_not_bound_is_never_written(
    small_queue: QueueUnderTest,
    gateway: FakeGateway,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unbounded bucket from an older ferry, on a server that cannot reserve the bound:
    writing to it could fill the storage again, so the gateway and the worker leave it alone
    (one error line each) and every call is accepted and runs."""
    queue = small_queue
    gateway.function("fn", lambda call: web.Response(text="ok"))
    functions = write_functions(tmp_path / "f.yml", {"fn": {"url": f"{gateway.url}/function/fn"}})
    bucket = "faas-calls-unbounded"
    await queue.js.create_key_value(api.KeyValueConfig(bucket=bucket, history=1))
    too_big = {"call_ledger_bucket": bucket, "call_ledger_max_bytes": str(2 * STORE)}
    env = gateway_env(queue, functions_file=str(functions), **too_big)
    async with running_gateway(env) as front, aiohttp.ClientSession() as session:
        statuses = await _flood(session, f"{front.url}/async-function/fn", 20)
        async with queue.worker(**too_big):
            await eventually(lambda: len(gateway.calls_to("fn")) >= 20, what="every call run")
    assert statuses == {202: 20}
    info = await queue.js.stream_info(f"KV_{bucket}")
    assert (info.state.messages, info.config.max_bytes) == (0, -1)
    refusals = [r for r in caplog.records if "the call ledger is not written" in r.getMessage()]
    assert len(refusals) == 2  # the gateway's and the worker's

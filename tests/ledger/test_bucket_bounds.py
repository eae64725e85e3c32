"""The ledger's bucket is bounded (`call_ledger_max_bytes`, oldest entries first), existing
buckets are brought to the bound, and a stored answer never takes more than its share."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from aiohttp import web
from nats.js import api

from connectors.core.errors import ConfigError, StartupError
from connectors.core.settings import load_settings
from ledger.bucket import open_bucket
from ledger.settings import CallLedgerSettings
from tests.support.http import Call, FakeGateway
from tests.support.ledger import LedgerUnderTest
from tests.support.queue import QueueUnderTest

MIB = 1024 * 1024


async def test_an_unbounded_bucket_from_an_older_ferry_is_bounded_at_start_up(
    queue: QueueUnderTest,
) -> None:
    bucket = f"faas-calls-{uuid.uuid4().hex[:8]}"
    kv = await queue.js.create_key_value(api.KeyValueConfig(bucket=bucket, history=1))
    await kv.put("call.old", b"{}")
    try:
        settings = CallLedgerSettings(call_ledger_bucket=bucket, call_ledger_max_bytes=2 * MIB)
        await open_bucket(queue.js, settings, replicas=1)
        config = (await queue.js.stream_info(f"KV_{bucket}")).config
        assert (config.max_bytes, config.discard) == (2 * MIB, api.DiscardPolicy.OLD)
        assert (await kv.get("call.old")).value == b"{}"  # nothing else changed
    finally:
        await queue.js.delete_key_value(bucket)


async def test_when_the_bucket_is_full_the_oldest_entries_go_first(queue: QueueUnderTest) -> None:
    bucket = f"faas-calls-{uuid.uuid4().hex[:8]}"
    settings = CallLedgerSettings(call_ledger_bucket=bucket, call_ledger_max_bytes=MIB)
    kv = await open_bucket(queue.js, settings, replicas=1)
    try:
        for number in range(40):  # 40 x 64 KiB: over two and a half times the bound
            await kv.put(f"call.c{number}", bytes(64 * 1024))
        info = await queue.js.stream_info(f"KV_{bucket}")
        assert info.state.bytes <= MIB
        assert (await kv.get("call.c39")).value == bytes(64 * 1024)
        with pytest.raises(Exception, match="not found"):
            await kv.get("call.c0")
    finally:
        await queue.js.delete_key_value(bucket)


async def test_a_bound_the_server_cannot_reserve_is_one_line_naming_the_setting(
    queue: QueueUnderTest,
) -> None:
    bucket = f"faas-calls-{uuid.uuid4().hex[:8]}"
    settings = CallLedgerSettings(call_ledger_bucket=bucket, call_ledger_max_bytes=2**60)
    with pytest.raises(StartupError, match=r"call_ledger_max_bytes=\d+: .*insufficient storage"):
        await open_bucket(queue.js, settings, replicas=1)


async def test_an_answer_over_its_share_of_the_bucket_is_not_stored(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    # 1 MiB bucket: an answer may take 1/128 of it, 8,192 bytes
    sizes = {"fits": 8192, "over": 8193}
    for name, size in sizes.items():
        gateway.function(name, _answer(size))
    fits = await queue.publish("fits", b"x")
    over = await queue.publish("over", b"x")
    async with queue.worker(**ledger.env(call_ledger_max_bytes=str(MIB))):
        kept = await ledger.wait_for_state(fits.call_id, "succeeded")
        dropped = await ledger.wait_for_state(over.call_id, "succeeded")
    assert kept.result is not None and len(kept.result.body) == 8192
    assert (dropped.result, dropped.result_stored, dropped.result_bytes) == (None, False, 8193)


def _answer(size: int) -> Callable[[Call], web.Response]:
    return lambda call: web.Response(body=b"a" * size)


@pytest.mark.parametrize("value", ["1000", "1MB", "-1"])
def test_a_bound_under_1_mib_or_not_a_number_is_one_clear_line(value: str) -> None:
    with pytest.raises(ConfigError, match="call_ledger_max_bytes"):
        load_settings(CallLedgerSettings, {"call_ledger_max_bytes": value})

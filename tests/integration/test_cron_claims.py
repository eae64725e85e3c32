"""Slot claims in a real JetStream bucket are per function: names that look alike never share
a claim key, so neither function loses its slots to the other."""

from __future__ import annotations

import uuid

import nats
from aiohttp import web

from connectors.cron.claims import OUTCOME_SEPARATOR, JetStreamClaims, busy_key, claim_key
from connectors.jetstream.settings import NatsSettings
from tests.support.brokers import NatsServer
from tests.support.clock import FakeClock
from tests.support.cron import cron, skipped, utc
from tests.support.http import FakeGateway
from tests.support.ports import eventually

LOOKALIKES = ["a+b.fn", "a_b.fn", "é.fn", "_.fn", "a=2Bb.fn", "a/b.fn", "a..b.fn", "a.=2Eb.fn"]


def test_claim_and_busy_keys_are_one_to_one() -> None:
    assert len({claim_key(name, 1) for name in LOOKALIKES}) == len(LOOKALIKES)
    assert len({busy_key(name) for name in LOOKALIKES}) == len(LOOKALIKES)
    assert claim_key("nightly.openfaas-fn", 5) == "slot.nightly.openfaas-fn.5"  # plain: as before


async def test_lookalike_names_each_win_their_own_claim_in_jetstream(
    nats_server: NatsServer,
) -> None:
    settings = NatsSettings(nats_url=nats_server.url)
    claims = await JetStreamClaims.open(settings, f"cron-{uuid.uuid4().hex[:8]}")
    try:
        won = [await claims.claim(name, 1_767_261_600_000, "me") for name in LOOKALIKES]
        again = [await claims.claim(name, 1_767_261_600_000, "other") for name in LOOKALIKES]
    finally:
        await claims.close()
    assert won == [True] * len(LOOKALIKES)
    assert again == [False] * len(LOOKALIKES)


async def test_lookalike_functions_both_fire_and_names_the_front_door_refuses_never_do(
    gateway: FakeGateway, nats_server: NatsServer
) -> None:
    """Names that differ in one character each keep their own slots; names that are not DNS
    labels (which no OpenFaaS gateway serves and the front door refuses) are skipped, never
    fired under a key they would share."""
    valid, refused = ("a-b", "ab", "a-bc"), ("a+b", "a_b", "é", "_")
    for name in (*valid, *refused):
        gateway.subscribe(name, "cron-function", schedule="* * * * *")
        gateway.function(name)
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    env = {"nats_url": nats_server.url, "cron_kv_bucket": f"cron-{uuid.uuid4().hex[:8]}"}
    async with cron(gateway, clock, **env) as connector:
        await clock.settle(len(valid))
        await clock.advance_to(utc("2026-01-01T10:02:00"), idle=lambda: not connector.firer.tasks)
        for name in valid:
            await eventually(lambda n=name: len(gateway.calls_to(n)) == 2, 10, what=name)
            assert skipped(connector, name, "claimed_elsewhere") == 0
    for name in refused:
        assert gateway.calls_to(name) == []


async def test_a_fired_slot_records_who_fired_it_and_how_it_ended(
    gateway: FakeGateway, nats_server: NatsServer
) -> None:
    """What the console's Schedules page shows as a schedule's last outcome."""
    gateway.function("ok")
    gateway.function("broken", lambda call: web.Response(status=400))
    for name in ("ok", "broken"):
        gateway.subscribe(name, "cron-function", schedule="* * * * *")
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    bucket = f"cron-{uuid.uuid4().hex[:8]}"
    async with cron(gateway, clock, nats_url=nats_server.url, cron_kv_bucket=bucket) as connector:
        await clock.settle(2)
        await clock.advance_to(utc("2026-01-01T10:01:00"), idle=lambda: not connector.firer.tasks)
        slot = 1_767_261_660_000  # 10:01:00
        nc = await nats.connect(nats_server.url)
        try:
            kv = await nc.jetstream().key_value(bucket)

            async def recorded(name: str) -> str:
                entry = await kv.get(claim_key(f"{name}.openfaas-fn", slot))
                text = (entry.value or b"").decode()
                return text if OUTCOME_SEPARATOR in text else ""

            ok = await eventually(lambda: recorded("ok"), 10, what="ok's outcome")
            broken = await eventually(lambda: recorded("broken"), 10, what="broken's outcome")
        finally:
            await nc.close()
    assert ok.endswith(f"{OUTCOME_SEPARATOR}200")
    assert broken.endswith(f"{OUTCOME_SEPARATOR}400 (failed)")

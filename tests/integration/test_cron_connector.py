"""The cron connector's guarantees, in-process on a clock the test moves, against a real
gateway double. No test waits for a real minute. Replicas: test_cron_replicas.py."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.support.clock import FakeClock
from tests.support.cron import cron, sample, scheduled, skipped, utc
from tests.support.http import FakeGateway, held_until
from tests.support.ports import eventually


async def test_slots_fire_at_the_right_instants_across_dst_changes(gateway: FakeGateway) -> None:
    for name, schedule in (("nightly", "30 2 * * *"), ("hourly", "0 * * * *")):
        gateway.subscribe(
            name, "cron-function", schedule=schedule, schedule_timezone="Europe/Berlin"
        )
        gateway.function(name)
    clock = FakeClock(utc("2026-03-28T00:00"))
    async with cron(gateway, clock) as connector:
        await clock.settle(2)
        await clock.advance_to(utc("2026-03-30T12:00"), idle=lambda: not connector.firer.tasks)
        await eventually(lambda: len(gateway.calls_to("nightly")) >= 3, 10, what="nightly calls")
        # 02:30 does not exist on 2026-03-29: it fires once, at 03:00 CEST (01:00Z)
        assert scheduled(gateway, "nightly") == [
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
        ]
        spring = [t for t in scheduled(gateway, "hourly") if t.startswith("2026-03-29T0")]
        assert spring[:4] == [f"2026-03-29T0{h}:00:00Z" for h in range(4)]  # none lost or doubled

    gateway.calls.clear()
    clock = FakeClock(utc("2026-10-24T00:00"))
    async with cron(gateway, clock) as connector:
        await clock.settle(2)
        await clock.advance_to(utc("2026-10-26T12:00"), idle=lambda: not connector.firer.tasks)
        await eventually(lambda: len(gateway.calls_to("nightly")) >= 3, 10, what="nightly calls")
        # 02:30 happens twice on 2026-10-25: it fires once, at the first (00:30Z)
        assert scheduled(gateway, "nightly") == [
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
        ]
        fall = [t for t in scheduled(gateway, "hourly") if t.startswith("2026-10-25T0")]
        assert fall[:3] == ["2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"]


async def test_every_schedule_of_a_function_fires_and_a_shared_instant_fires_once(
    gateway: FakeGateway,
) -> None:
    gateway.subscribe(
        "multi", "cron-function", schedule="15 * * * *; 45 * * * *; @hourly; 0 * * * *"
    )
    gateway.function("multi")
    clock = FakeClock(utc("2026-01-01T10:00"))
    async with cron(gateway, clock) as connector:
        await clock.settle(4)
        await clock.advance_to(utc("2026-01-01T12:00"), idle=lambda: not connector.firer.tasks)
        await eventually(lambda: len(gateway.calls_to("multi")) >= 6, 10, what="six calls")
        await asyncio.sleep(0.2)
        assert sorted(scheduled(gateway, "multi")) == [
            f"2026-01-01T{t}:00Z" for t in ("10:15", "10:45", "11:00", "11:15", "11:45", "12:00")
        ]


async def test_call_carries_cron_headers_and_a_deterministic_call_id(gateway: FakeGateway) -> None:
    gateway.subscribe("tick", "cron-function", schedule="*/5 * * * *")
    gateway.function("tick")
    clock = FakeClock(utc("2026-01-01T10:01"))
    async with cron(gateway, clock):
        await clock.settle(1)
        await clock.advance_to(utc("2026-01-01T10:05"))
        (call,) = await eventually(lambda: gateway.calls_to("tick"), 10, what="the call")
    slot_ms = int(utc("2026-01-01T10:05").timestamp() * 1000)
    assert call.path == "" and call.method == "POST"
    assert call.headers["X-Topic"] == "cron-function"
    assert call.headers["X-Connector"] == "cron-connector"
    assert call.headers["X-Cron-Schedule"] == "*/5 * * * *"
    assert call.headers["X-Cron-Scheduled-Time"] == "2026-01-01T10:05:00Z"
    assert call.headers["X-Cron-Time-Zone"] == "UTC"
    assert call.headers["X-Call-Id"] == f"tick.openfaas-fn:{slot_ms}"


async def test_forbid_skips_a_slot_while_the_previous_call_runs(gateway: FakeGateway) -> None:
    release = asyncio.Event()

    gateway.subscribe("long", "cron-function", schedule="* * * * *")
    gateway.function("long", held_until(release))
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    async with cron(gateway, clock) as connector:
        await clock.settle(1)
        await clock.advance_to(utc("2026-01-01T10:01:30"))
        await eventually(lambda: gateway.calls_to("long"), 10, what="the first call")
        await clock.advance_to(utc("2026-01-01T10:02:30"))
        assert len(gateway.calls_to("long")) == 1
        assert skipped(connector, "long", "forbid") == 1
        release.set()
        await eventually(lambda: not connector.firer.tasks, 10, what="the first call done")
        await clock.advance_to(utc("2026-01-01T10:03:30"))
        await eventually(lambda: len(gateway.calls_to("long")) == 2, 10, what="the next slot")


async def test_allow_starts_another_call_while_the_previous_runs(gateway: FakeGateway) -> None:
    release = asyncio.Event()

    gateway.subscribe("long", "cron-function", schedule="* * * * *")
    gateway.function("long", held_until(release))
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    async with cron(gateway, clock, concurrency_policy="allow"):
        await clock.settle(1)
        await clock.advance_to(utc("2026-01-01T10:02:30"))
        await eventually(lambda: gateway.running == 2, 10, what="two calls at once")
        release.set()


async def test_missed_slots_fire_only_the_latest_within_the_starting_deadline(
    gateway: FakeGateway,
) -> None:
    gateway.subscribe("report", "cron-function", schedule="*/10 * * * *")
    gateway.function("report")
    clock = FakeClock(utc("2026-01-01T12:05"))
    async with cron(gateway, clock, starting_deadline="15m") as connector:
        # down at 12:00: caught up at start, once
        await eventually(lambda: gateway.calls_to("report"), 10, what="the catch-up call")
        await clock.settle(1)
        await clock.jump(utc("2026-01-01T12:45"))  # 12:10 .. 12:40 slept through
        await eventually(lambda: len(gateway.calls_to("report")) == 2, 10, what="one more call")
        await asyncio.sleep(0.2)
        assert scheduled(gateway, "report") == ["2026-01-01T12:00:00Z", "2026-01-01T12:40:00Z"]
        assert skipped(connector, "report", "missed") == 3


async def test_without_a_starting_deadline_missed_slots_are_not_fired(
    gateway: FakeGateway,
) -> None:
    gateway.subscribe("report", "cron-function", schedule="*/10 * * * *")
    gateway.function("report")
    clock = FakeClock(utc("2026-01-01T12:05"))
    async with cron(gateway, clock) as connector:
        await clock.settle(1)
        await clock.jump(utc("2026-01-01T12:45"))
        await clock.advance_to(utc("2026-01-01T12:50"))
        await eventually(lambda: gateway.calls_to("report"), 10, what="the next slot")
        await asyncio.sleep(0.2)
        assert scheduled(gateway, "report") == ["2026-01-01T12:50:00Z"]
        assert skipped(connector, "report", "missed") == 4


async def test_an_invalid_schedule_is_counted_and_does_not_stop_the_others(
    gateway: FakeGateway,
) -> None:
    gateway.subscribe("broken", "cron-function", schedule="every minute please")
    gateway.subscribe(
        "elsewhere", "cron-function", schedule="* * * * *", schedule_timezone="Mars/Olympus"
    )
    gateway.subscribe("fine", "cron-function", schedule="* * * * *")
    for name in ("broken", "elsewhere", "fine"):
        gateway.function(name)
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    async with cron(gateway, clock) as connector:
        await clock.settle(1)
        await clock.advance_to(utc("2026-01-01T10:03:30"), idle=lambda: not connector.firer.tasks)
        await eventually(lambda: len(gateway.calls_to("fine")) == 3, 10, what="the good schedule")
        # two more topic-map rebuilds begin (each lists namespaces, then functions): the first
        # of them has been read whole, and each schedule is still counted once
        listed = len(gateway.system_authorizations)
        await eventually(
            lambda: len(gateway.system_authorizations) >= listed + 4, 10, what="two rebuilds"
        )
        assert gateway.calls_to("broken") == gateway.calls_to("elsewhere") == []
        for name in ("broken", "elsewhere"):
            assert (
                sample(connector, "cron_invalid_schedules_total", function=f"{name}.openfaas-fn")
                == 1
            )


async def test_hostile_schedules_are_refused_whole_and_not_logged_whole(
    gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.subscribe("long", "cron-function", schedule="1 " * 5_000)
    gateway.subscribe(
        "many",
        "cron-function",
        schedule=";".join(f"{m} {h} * * *" for h in range(24) for m in range(60)),
    )
    gateway.subscribe("fine", "cron-function", schedule="@hourly")
    clock = FakeClock(utc("2026-01-01T10:00"))
    with caplog.at_level(logging.INFO):
        async with cron(gateway, clock) as connector:
            await clock.settle(1)
            assert {key[0] for key in connector.jobs} == {"fine.openfaas-fn"}
            for name in ("long", "many"):
                invalid = sample(
                    connector, "cron_invalid_schedules_total", function=f"{name}.openfaas-fn"
                )
                assert invalid == 1
    assert max(len(record.getMessage()) for record in caplog.records) < 300

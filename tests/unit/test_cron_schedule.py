"""Schedule parsing and slot arithmetic, as a table (pure functions, no clock, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.cron.schedule import ScheduleError, next_slot, parse_schedules, slots_between


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (schedule, zone, after (UTC), the next slots (UTC))
NEXT_SLOTS = [
    ("*/15 * * * *", "UTC", "2026-01-01T10:07", ["10:15", "10:30", "10:45", "11:00"]),
    ("0 9 * * 1-5", "UTC", "2026-01-02T09:00", ["2026-01-05T09:00", "2026-01-06T09:00"]),
    ("@hourly", "UTC", "2026-01-01T10:00", ["11:00", "12:00"]),
    ("@daily", "UTC", "2026-01-01T10:00", ["2026-01-02T00:00", "2026-01-03T00:00"]),
    ("0 12 * * *", "America/New_York", "2026-01-01T00:00", ["17:00", "2026-01-02T17:00"]),
    # Europe/Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z): 02:30 never
    # happens, so it fires once at the first valid instant, 03:00 CEST.
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-27T12:00",
        ["2026-03-28T01:30", "2026-03-29T01:00", "2026-03-30T00:30"],
    ),
    # Slots inside the gap and the slot at its end collapse into one firing.
    (
        "*/20 * * * *",
        "Europe/Berlin",
        "2026-03-29T00:30",
        ["2026-03-29T00:40", "2026-03-29T01:00", "2026-03-29T01:20"],
    ),
    # Hourly across the gap: one firing per real hour, none doubled.
    (
        "0 * * * *",
        "Europe/Berlin",
        "2026-03-28T23:30",
        ["2026-03-29T00:00", "2026-03-29T01:00", "2026-03-29T02:00"],
    ),
    # Europe/Berlin falls back 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z): 02:30 happens
    # twice and fires once, at its first occurrence (00:30Z).
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-23T12:00",
        ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"],
    ),
    # The repeated hour's wall-clock slots fire in its first pass only.
    (
        "0 * * * *",
        "Europe/Berlin",
        "2026-10-24T23:30",
        ["2026-10-25T00:00", "2026-10-25T02:00", "2026-10-25T03:00"],
    ),
    # Searching from inside the second pass does not fire its slots again.
    ("*/30 * * * *", "Europe/Berlin", "2026-10-25T01:10", ["2026-10-25T02:00"]),
    # US rules: New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z).
    (
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T12:00",
        ["2026-03-08T07:00", "2026-03-09T06:30"],
    ),
]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), NEXT_SLOTS)
def test_next_slots(expression: str, zone: str, after: str, expected: list[str]) -> None:
    (schedule,) = parse_schedules(expression, zone)
    day = after[:10]
    slots = []
    cursor = utc(after)
    for _ in expected:
        cursor = next_slot(schedule, cursor)
        slots.append(cursor)
    assert slots == [utc(e if "T" in e else f"{day}T{e}") for e in expected]


PARSED = [
    ("*/5 * * * *", ["*/5 * * * *"]),
    ("@hourly; 0 9 * * 1-5", ["@hourly", "0 9 * * 1-5"]),
    ("  0   9 * * *  ;", ["0 9 * * *"]),
    ("@Daily", ["@daily"]),
    ("0 * * * *;0 * * * *", ["0 * * * *"]),
    ("@every 2s", ["@every 2s"]),
    ("@every 5m; @every 300s", ["@every 5m"]),
    ("@every 1h30m", ["@every 90m"]),
    ("@every 500ms", ["@every 1s"]),  # robfig/cron: at least a second
    ("CRON_TZ=Europe/Berlin 0 9 * * *", ["0 9 * * *"]),
    ("TZ=America/New_York @daily", ["@daily"]),
]


@pytest.mark.parametrize(("text", "expressions"), PARSED)
def test_parse_schedules(text: str, expressions: list[str]) -> None:
    assert [s.expression for s in parse_schedules(text)] == expressions


INVALID = [
    ("", "empty"),
    ("every minute", "five fields"),
    ("* * * *", "five fields"),
    ("0 0 * * * *", "five fields"),
    ("61 * * * *", "not a valid"),
    ("@reboot", "unknown descriptor"),
    ("0 0 30 2 *", "never fires"),
    ("0 9 * * *;nonsense", "five fields"),
    ("@every", "expected a duration"),
    ("@every soon", "expected a duration"),
    ("CRON_TZ=Europe/Berlin", "without a schedule"),
    ("CRON_TZ=Mars/Olympus 0 9 * * *", "unknown time zone"),
]


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_invalid_schedules_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ScheduleError, match=reason):
        parse_schedules(text)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone"):
        parse_schedules("* * * * *", "Mars/Olympus")


def test_slots_between_includes_both_ends() -> None:
    (schedule,) = parse_schedules("*/10 * * * *")
    found = slots_between(schedule, utc("2026-01-01T10:00"), utc("2026-01-01T10:30"))
    assert found == [utc(f"2026-01-01T10:{m}") for m in ("00", "10", "20", "30")]


def test_the_descriptors_robfig_cron_accepts_parse() -> None:
    for text in ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"):
        (schedule,) = parse_schedules(text)
        assert schedule.every == 0


def test_a_zone_prefix_sets_that_expression_zone_over_the_annotation() -> None:
    berlin, utc_default = parse_schedules("CRON_TZ=Europe/Berlin 0 9 * * *; 0 9 * * *", "UTC")
    assert (berlin.zone_name, utc_default.zone_name) == ("Europe/Berlin", "UTC")
    # 09:00 in Berlin in winter is 08:00Z
    assert next_slot(berlin, utc("2026-01-01T00:00")) == utc("2026-01-01T08:00")
    assert next_slot(utc_default, utc("2026-01-01T00:00")) == utc("2026-01-01T09:00")


def test_every_fires_at_whole_multiples_of_its_period_since_the_epoch() -> None:
    (two,) = parse_schedules("@every 2s")
    assert next_slot(two, utc("2026-01-01T10:00:00")) == utc("2026-01-01T10:00:02")
    assert next_slot(two, utc("2026-01-01T10:00:01.5")) == utc("2026-01-01T10:00:02")
    (five,) = parse_schedules("@every 5m", "Asia/Kolkata")  # a zone does not shift it
    found = slots_between(five, utc("2026-01-01T10:01"), utc("2026-01-01T10:20"))
    assert found == [utc(f"2026-01-01T10:{m}") for m in ("05", "10", "15", "20")]


def test_a_huge_schedule_is_refused_and_its_error_does_not_quote_it_whole() -> None:
    text = "x" * 10_000
    with pytest.raises(ScheduleError) as caught:
        parse_schedules(text)
    message = str(caught.value)
    assert len(message) < 200
    assert "10000 characters" in message


def test_more_than_32_expressions_in_one_annotation_are_refused() -> None:
    assert len(parse_schedules("; ".join(f"{m} * * * *" for m in range(32)))) == 32
    every_minute_of_a_day = ";".join(f"{m} {h} * * *" for h in range(24) for m in range(60))
    with pytest.raises(ScheduleError, match="more than 32"):
        parse_schedules(every_minute_of_a_day[:1024])
    with pytest.raises(ScheduleError, match="longer than 1024"):
        parse_schedules(every_minute_of_a_day)

"""The schedules page's rows: each cron function's schedules with their next slots and who
claimed the latest one, from the function list and the cron connector's own parser."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from connectors.core.function_entries import FunctionInfo

CRON_TOPIC = "cron-function"  # the cron connector's names, read here without importing it
SCHEDULE_ANNOTATION = "schedule"
TIMEZONE_ANNOTATION = "schedule_timezone"
NEXT_SLOTS = 3
# the latest past slot is looked for in windows this far back, shortest first, so a schedule
# that fires every second costs a minute of slots, not two days of them
LOOK_BACK = (timedelta(minutes=1), timedelta(hours=1), timedelta(days=1), timedelta(days=8))
MAX_ROWS = 500


@dataclass
class ScheduleRow:
    function: str
    expression: str
    zone: str
    next_slots: list[datetime] = field(default_factory=list)
    last_slot: datetime | None = None
    last_claimed_by: str | None = None
    error: str = ""


def is_cron(function: FunctionInfo, delimiter: str = ",") -> bool:
    topics = function.annotations.get("topic", "")
    return CRON_TOPIC in (t.strip() for t in topics.split(delimiter))


async def schedule_rows(
    functions: Sequence[FunctionInfo],
    claimed_by: Callable[[str, int], Awaitable[str | None]],
    now: datetime | None = None,
) -> list[ScheduleRow]:
    """One row per (cron function, schedule); a schedule that does not parse is a row with its
    error, as the cron connector would log it."""
    try:
        from connectors.cron.schedule import (
            ScheduleError,
            next_slot,
            parse_schedules,
            slots_between,
        )
    except ImportError:  # croniter is the cron extra's
        return [ScheduleRow("", "", "", error="install ferry[cron] to read schedules")]
    now = now or datetime.now(UTC)
    rows: list[ScheduleRow] = []
    for function in [f for f in functions if is_cron(f)][:MAX_ROWS]:
        text = function.annotations.get(SCHEDULE_ANNOTATION, "")
        zone = function.annotations.get(TIMEZONE_ANNOTATION, "") or "UTC"
        try:
            schedules = parse_schedules(text, zone)
        except (ScheduleError, ValueError) as exc:
            rows.append(ScheduleRow(function.qualified, text, zone, error=str(exc)))
            continue
        for schedule in schedules:
            row = ScheduleRow(function.qualified, schedule.expression, schedule.zone_name)
            try:
                cursor = now
                for _ in range(NEXT_SLOTS):
                    cursor = next_slot(schedule, cursor)
                    row.next_slots.append(cursor)
                past = _latest_slot(slots_between, schedule, now)
            except ScheduleError as exc:
                row.error = str(exc)
                past = []
            if past:
                row.last_slot = past[-1]
                row.last_claimed_by = await claimed_by(function.qualified, _ms(past[-1]))
            rows.append(row)
    return rows


def _latest_slot(
    slots_between: Callable[..., list[datetime]], schedule: object, now: datetime
) -> list[datetime]:
    for window in LOOK_BACK:
        found = slots_between(schedule, now - window, now, limit=10_000)
        if found and len(found) < 10_000:
            return found[-1:]
    return []


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)  # as the cron connector names its claims

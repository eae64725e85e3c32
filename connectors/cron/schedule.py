"""Cron schedules as pure functions: parse an annotation, find the next slot after an instant.

Slots are wall-clock times in the schedule's time zone, turned into instants by one rule:

- a wall-clock time that happens once fires at that instant;
- a wall-clock time that happens twice (the repeated hour when clocks go back) fires once, at
  its first occurrence;
- a wall-clock time that never happens (the hour skipped when clocks go forward) fires once, at
  the first valid instant after the gap; several skipped slots, and a slot at that instant,
  collapse into that one firing.

So every wall-clock slot of a day fires exactly once, never twice and never not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

DESCRIPTORS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
SEPARATOR = ";"
# A slot whose wall-clock time is before the clock's reading at `after` fires no later than
# `after` (clocks only go back over times they already showed), so the search starts there.
LOOK_BEHIND = timedelta(minutes=1)
MAX_CANDIDATES = 2000
MINUTE = timedelta(minutes=1)
NEVER_CHECK_FROM = datetime(2000, 1, 1)


class ScheduleError(ValueError):
    """A schedule annotation (or its time zone) that cannot be used."""


@dataclass(frozen=True)
class Schedule:
    expression: str
    zone: ZoneInfo

    @property
    def zone_name(self) -> str:
        return str(self.zone.key)


def load_zone(name: str) -> ZoneInfo:
    """An IANA time zone by name, or ScheduleError."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(
            f"unknown time zone {name!r} (use an IANA name, e.g. Europe/Berlin)"
        ) from None


def parse_expression(text: str) -> str:
    """One five-field cron expression or descriptor, normalised; ScheduleError if invalid."""
    expression = " ".join(text.split())
    if not expression:
        raise ScheduleError("empty schedule")
    if expression.startswith("@"):
        if expression.lower() not in DESCRIPTORS:
            raise ScheduleError(f"{expression!r}: unknown descriptor")
        return expression.lower()
    if len(expression.split(" ")) != 5:
        raise ScheduleError(f"{expression!r}: expected five fields (minute hour day month weekday)")
    if not croniter.is_valid(expression):
        raise ScheduleError(f"{expression!r}: not a valid cron expression")
    try:
        croniter(expression, NEVER_CHECK_FROM).get_next(datetime)
    except CroniterError:
        raise ScheduleError(f"{expression!r}: never fires (e.g. February 30)") from None
    return expression


def parse_schedules(text: str, zone: str = "UTC") -> tuple[Schedule, ...]:
    """Every schedule of a `schedule` annotation (separated by `;`), in one time zone."""
    tz = load_zone(zone)
    expressions: list[str] = []
    for part in text.split(SEPARATOR):
        if part.strip():
            expression = parse_expression(part)
            if expression not in expressions:
                expressions.append(expression)
    if not expressions:
        raise ScheduleError("empty schedule")
    return tuple(Schedule(e, tz) for e in expressions)


def _exists(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The first instant showing `wall` on the zone's clocks, or None if it never shows."""
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    return None


def wall_to_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a naive wall-clock slot fires at, by the rule in this module's docstring."""
    instant = _exists(wall, zone)
    probe = wall.replace(second=0, microsecond=0)
    for _ in range(48 * 60):
        if instant is not None:
            return instant
        probe += MINUTE
        instant = _exists(probe, zone)
    raise ScheduleError(f"no valid time after {wall.isoformat()} in {zone.key}")


def next_slot(schedule: Schedule, after: datetime) -> datetime:
    """The first slot strictly after the aware instant `after`, as an aware UTC datetime."""
    start = after.astimezone(schedule.zone).replace(tzinfo=None) - LOOK_BEHIND
    try:
        candidates = croniter(schedule.expression, start)
        for _ in range(MAX_CANDIDATES):
            wall = candidates.get_next(datetime)
            instant = wall_to_instant(wall, schedule.zone)
            if instant > after:
                return instant
    except CroniterError as exc:
        raise ScheduleError(f"{schedule.expression!r}: {exc}") from None
    raise ScheduleError(f"{schedule.expression!r}: no slot found after {after.isoformat()}")


def slots_between(
    schedule: Schedule, start: datetime, end: datetime, limit: int = 10_000
) -> list[datetime]:
    """Slots `s` with start <= s <= end, at most `limit` of them (the earliest)."""
    found: list[datetime] = []
    slot = next_slot(schedule, start - timedelta(microseconds=1))
    while slot <= end and len(found) < limit:
        found.append(slot)
        slot = next_slot(schedule, slot)
    return found

"""Cron schedules as pure functions: parse an annotation, find the next slot after an instant.

The syntax is what OpenFaaS's cron-connector (robfig/cron v3) accepts: five fields, the
descriptors `@yearly` ... `@hourly`, `@every <duration>`, and a `CRON_TZ=<zone> ` or
`TZ=<zone> ` prefix that sets one expression's time zone.

Slots are wall-clock times in the schedule's time zone, turned into instants by one rule:

- a wall-clock time that happens once fires at that instant;
- a wall-clock time that happens twice (the repeated hour when clocks go back) fires once, at
  its first occurrence;
- a wall-clock time that never happens (the hour skipped when clocks go forward) fires once, at
  the first valid instant after the gap; several skipped slots, and a slot at that instant,
  collapse into that one firing.

So every wall-clock slot of a day fires exactly once, never twice and never not at all.
`@every D` is not wall-clock time: it fires at every whole multiple of D since the Unix epoch,
so replicas and restarts agree on its slots (robfig/cron counts from when it added the job).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from connectors.core.durations import format_duration, parse_duration
from connectors.core.targets import shorten

DESCRIPTORS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
EVERY = "@every"
ZONE_PREFIXES = ("CRON_TZ=", "TZ=")
SEPARATOR = ";"
# Bounds on what one function's annotation may ask for: a schedule annotation is input from
# whoever deploys functions, and each expression becomes a task in this process.
MAX_ANNOTATION_CHARS = 1024
MAX_SCHEDULES = 32
SHOWN_CHARS = 60  # how much of a rejected text an error message quotes
# A slot whose wall-clock time is before the clock's reading at `after` fires no later than
# `after` (clocks only go back over times they already showed), so the search starts there.
LOOK_BEHIND = timedelta(minutes=1)
MAX_CANDIDATES = 2000
MINUTE = timedelta(minutes=1)
NEVER_CHECK_FROM = datetime(2000, 1, 1)


def shown(text: str) -> str:
    """`text` quoted for a message, cut to SHOWN_CHARS: a hostile annotation is not logged whole."""
    return shorten(text, SHOWN_CHARS)


class ScheduleError(ValueError):
    """A schedule annotation (or its time zone) that cannot be used."""


@dataclass(frozen=True)
class Schedule:
    expression: str
    zone: ZoneInfo
    every: int = 0  # seconds, for `@every`; 0 for wall-clock schedules

    @property
    def zone_name(self) -> str:
        return str(self.zone.key)


def load_zone(name: str) -> ZoneInfo:
    """An IANA time zone by name, or ScheduleError."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(
            f"unknown time zone {shown(name)} (use an IANA name, e.g. Europe/Berlin)"
        ) from None


def parse_expression(text: str) -> str:
    """One five-field cron expression or descriptor, normalised; ScheduleError if invalid."""
    expression = " ".join(text.split())
    if not expression:
        raise ScheduleError("empty schedule")
    if expression.startswith("@"):
        word, _, rest = expression.partition(" ")
        if word.lower() == EVERY:
            return f"{EVERY} {format_duration(every_seconds(rest))}"
        if expression.lower() not in DESCRIPTORS:
            raise ScheduleError(f"{shown(expression)}: unknown descriptor")
        return expression.lower()
    if len(expression.split(" ")) != 5:
        raise ScheduleError(
            f"{shown(expression)}: expected five fields (minute hour day month weekday)"
        )
    if not croniter.is_valid(expression):
        raise ScheduleError(f"{shown(expression)}: not a valid cron expression")
    try:
        croniter(expression, NEVER_CHECK_FROM).get_next(datetime)
    except CroniterError:
        raise ScheduleError(f"{shown(expression)}: never fires (e.g. February 30)") from None
    return expression


def every_seconds(text: str) -> int:
    """The period of `@every <duration>` in whole seconds, at least one (as robfig/cron)."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise ScheduleError(
            f"@every {shown(text)}: expected a duration such as 30s, 5m or 1h30m"
        ) from None
    return max(1, math.floor(seconds))


def split_zone(text: str, zone: str) -> tuple[str, str]:
    """An expression without its `CRON_TZ=`/`TZ=` prefix, and the zone it names (or `zone`)."""
    stripped = text.strip()
    for prefix in ZONE_PREFIXES:
        if stripped.startswith(prefix):
            name, _, rest = stripped[len(prefix) :].partition(" ")
            if not rest.strip():
                raise ScheduleError(f"{shown(stripped)}: a time zone prefix without a schedule")
            return rest, name
    return stripped, zone


@functools.lru_cache(maxsize=1024)  # every refresh re-reads the same annotations
def parse_schedules(text: str, zone: str = "UTC") -> tuple[Schedule, ...]:
    """Every schedule of a `schedule` annotation (separated by `;`), in `zone` unless an
    expression names its own with a `CRON_TZ=` or `TZ=` prefix."""
    if len(text) > MAX_ANNOTATION_CHARS:
        raise ScheduleError(f"{shown(text)}: longer than {MAX_ANNOTATION_CHARS} characters")
    parts = [part for part in text.split(SEPARATOR) if part.strip()]
    if len(parts) > MAX_SCHEDULES:
        raise ScheduleError(f"{len(parts)} expressions, more than {MAX_SCHEDULES}")
    schedules: list[Schedule] = []
    for part in parts:
        body, zone_name = split_zone(part, zone)
        expression = parse_expression(body)
        every = every_seconds(expression.partition(" ")[2]) if expression.startswith(EVERY) else 0
        schedule = Schedule(expression, load_zone(zone_name), every)
        if schedule not in schedules:
            schedules.append(schedule)
    if not schedules:
        raise ScheduleError("empty schedule")
    return tuple(schedules)


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
    if schedule.every:
        periods = math.floor(after.timestamp() / schedule.every) + 1
        return datetime.fromtimestamp(periods * schedule.every, UTC)
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

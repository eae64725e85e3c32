"""Go-style duration parsing (`500ms`, `1m30s`, `2h`) plus bare seconds, as OpenFaaS accepts."""

from __future__ import annotations

import math
import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# Go's time.Duration is an int64 of nanoseconds: nothing longer (about 292 years) is a duration.
LONGEST_SECONDS = (2**63 - 1) / 1e9
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Return seconds for a Go duration string or a bare number of seconds.

    Raises ValueError with a short reason for anything else.
    """
    value = text.strip()
    if not value:
        raise ValueError("empty duration")
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds < 0:
            raise ValueError("duration must not be negative")
        return _bounded(seconds)
    sign = 1.0
    if value[0] in "+-":
        sign = -1.0 if value[0] == "-" else 1.0
        value = value[1:]
    total = 0.0
    pos = 0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise ValueError("not a duration (use e.g. 500ms, 30s, 2m or seconds)")
    if sign < 0 and total > 0:
        raise ValueError("duration must not be negative")
    return _bounded(total)


def _bounded(seconds: float) -> float:
    if not math.isfinite(seconds) or seconds > LONGEST_SECONDS:  # "inf", "nan", "1e400"
        raise ValueError("duration is not finite or longer than Go's longest (about 292 years)")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds the way `--help` shows defaults: `30s`, `500ms`, `2m`."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"

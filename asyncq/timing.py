"""When a queued call may run: its not-before and expiry times, read from the caller's headers.

Pure values and parsing, no NATS: the front door and `ferry publish` read the headers here,
the publisher and the worker read the NATS headers these values become. Times are Unix
seconds; on the wire they are Unix nanoseconds, as `X-Start-Time` is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from connectors.core.durations import parse_duration
from connectors.core.numbers import ascii_int

# NATS headers on a queued call (kept by a scheduled message when it fires)
NOT_BEFORE = "Ferry-Not-Before"
EXPIRES_AT = "Ferry-Expires-At"

# the caller's headers that ask for it (not passed on to the function)
DELAY_HEADERS = frozenset({"x-delay", "x-not-before", "x-expires-at", "x-max-age"})
_LENGTHS = frozenset(len(name) for name in DELAY_HEADERS)
LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: any later time is garbage


class TimingProblem(ValueError):
    """A delay or expiry header that cannot be taken; the text is the reason (a 400)."""


@dataclass(frozen=True, slots=True)
class CallTiming:
    """`not_before` is None for a call due at once; `expires_at` None for one that never
    expires by its own headers (an annotation or the worker may still expire it)."""

    not_before: float | None = None
    expires_at: float | None = None

    def nats_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.not_before is not None:
            headers[NOT_BEFORE] = str(int(self.not_before * 1e9))
        if self.expires_at is not None:
            headers[EXPIRES_AT] = str(int(self.expires_at * 1e9))
        return headers


def timing_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The delay and expiry headers among `headers` (lower-case names; the first of each).

    Cheap for a call without them: one length test per header, rarely a `lower()`."""
    found: dict[str, str] = {}
    for name, value in headers:
        if len(name) in _LENGTHS:
            lowered = name.lower()
            if lowered in DELAY_HEADERS:
                found.setdefault(lowered, value.strip())
    return found


def read_timing(found: dict[str, str], *, now: float, max_delay: float) -> CallTiming | None:
    """The timing `found` (from `timing_headers`) asks for, or None if it asks for nothing.

    A not-before time in the past means now. Age (`X-Max-Age`) counts from when the call is
    due: its not-before time, else now (its acceptance). Raises TimingProblem."""
    if not found:
        return None
    if "x-delay" in found and "x-not-before" in found:
        raise TimingProblem("X-Delay and X-Not-Before: send one of them, not both")
    if "x-expires-at" in found and "x-max-age" in found:
        raise TimingProblem("X-Expires-At and X-Max-Age: send one of them, not both")
    not_before = None
    if "x-delay" in found:
        not_before = now + _duration("X-Delay", found["x-delay"])
    elif "x-not-before" in found:
        not_before = _time("X-Not-Before", found["x-not-before"])
    if not_before is not None and not_before - now > max_delay:
        raise TimingProblem(
            f"the call would be due in {not_before - now:.0f}s, beyond max_delay ({max_delay:.0f}s)"
        )
    if not_before is not None and not_before <= now:
        not_before = None  # due already: a call like any other
    due = now if not_before is None else not_before
    expires_at = None
    if "x-max-age" in found:
        max_age = _duration("X-Max-Age", found["x-max-age"])
        if max_age <= 0:
            raise TimingProblem("X-Max-Age must be more than 0s")
        expires_at = due + max_age
    elif "x-expires-at" in found:
        expires_at = _time("X-Expires-At", found["x-expires-at"])
        if expires_at <= due:
            what = "its not-before time" if not_before is not None else "now"
            raise TimingProblem(f"X-Expires-At is not after {what}: the call could never run")
    return CallTiming(not_before, expires_at)


def _duration(header: str, text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise TimingProblem(f"{header} {text[:40]!r}: {exc}") from None
    if not math.isfinite(seconds):
        raise TimingProblem(f"{header} {text[:40]!r}: not a finite duration")
    return seconds


def _time(header: str, text: str) -> float:
    """RFC 3339 (with a zone) or Unix seconds."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = _rfc3339(header, text)
    if not math.isfinite(seconds) or seconds < 0 or seconds > LATEST_TIME:
        raise TimingProblem(f"{header} {text[:40]!r}: not a time")
    return seconds


def _rfc3339(header: str, text: str) -> float:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TimingProblem(
            f"{header} {text[:40]!r}: expected an RFC 3339 time or Unix seconds"
        ) from None
    if parsed.tzinfo is None:
        raise TimingProblem(f"{header} {text[:40]!r}: an RFC 3339 time needs its zone")
    return parsed.timestamp()


def header_seconds(headers: dict[str, str] | None, name: str) -> float | None:
    """A Unix-nanosecond NATS header as seconds, or None when missing or not a number."""
    if not headers:
        return None
    nanoseconds = ascii_int(headers.get(name) or "", 20)
    return None if nanoseconds is None else nanoseconds / 1e9

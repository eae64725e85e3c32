"""A circuit breaker per function, as a pure state machine: no timers, no I/O.

The shape is sony/gobreaker's (the breaker Dapr uses): the state changes only when the breaker
is asked (`tick`) or told an outcome (`record`), using the clock passed in, and a
generation number, bumped on every change, keeps late results of calls started under an older
state from counting. Only availability failures count (`availability`): a function that answers,
even with its own 4xx or 500, is up. Pausing by hand is a forced-open state kept outside (the
lane's `paused`), so resuming leaves the breaker as it was.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from connectors.core.durations import parse_duration
from connectors.core.gateway_answers import INTERNAL_HEADER, ProxyError, proxy_error

FAILURES_ANNOTATION = "ferry.breaker.failures"
OPEN_FOR_ANNOTATION = "ferry.breaker.open_for"
MAX_OPEN_FOR_SECONDS = 600.0  # the open period doubles while probes fail, up to this
UNREACHABLE_STATUSES = frozenset({502, 503, 504})
UNREACHABLE_PREFIX = "could not reach"  # the invoker's error for a refused or reset connection


class BreakerState(enum.IntEnum):
    """The gauge's values: 0 closed, 1 half-open, 2 open."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5  # consecutive availability failures that open it
    open_for: float = 60.0  # the first open period; doubled while probes fail
    max_open_for: float = MAX_OPEN_FOR_SECONDS


class Attempt(Protocol):
    """What the breaker reads of an attempt's result (an `InvocationResult`)."""

    @property
    def ok(self) -> bool: ...
    @property
    def status(self) -> int | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def error(self) -> str: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def final(self) -> bool: ...


@dataclass(frozen=True)
class Change:
    """A state change, for the one log line it makes."""

    state: BreakerState
    reason: str


def availability(
    status: int | None,
    headers: Mapping[str, str],
    *,
    error: str = "",
    timed_out: bool = False,
    final: bool = False,
) -> bool | None:
    """True if the answer shows the function up, False for an availability failure, None for
    an answer that says neither (overload: 429, or 503 with Retry-After, is the limiter's)."""
    if status is None:
        if final:
            return None  # a request that cannot be sent, or an answer too large
        return False if timed_out or error.startswith(UNREACHABLE_PREFIX) else None
    if status == 429 or (status == 503 and headers.get("Retry-After")):
        return None
    if status in UNREACHABLE_STATUSES:
        return proxy_error(headers) is ProxyError.TOO_LARGE
    return INTERNAL_HEADER not in headers


def annotated_settings(
    annotations: Mapping[str, str], defaults: BreakerSettings
) -> BreakerSettings:
    """`ferry.breaker.failures` (a whole number, 1 to 1000) and `ferry.breaker.open_for`
    (seconds, or Go syntax: `500ms`, `2m`) laid over the worker's defaults; a malformed value
    keeps the default.

    The queue worker asks for every message of a function with these annotations: the result
    is kept for each pair of values (up to `SETTINGS_KEPT`), since reading them costs about
    ten times as much as looking them up."""
    failures_text = annotations.get(FAILURES_ANNOTATION)
    open_for_text = annotations.get(OPEN_FOR_ANNOTATION)
    if len(failures_text or "") + len(open_for_text or "") <= KEPT_TEXT_CHARS:
        return _settings_kept(failures_text, open_for_text, defaults)
    return _read_settings(failures_text, open_for_text, defaults)  # a long value: not kept


SETTINGS_KEPT = 256  # breaker settings kept for the annotation values met (the least used go)
KEPT_TEXT_CHARS = 64  # longer values are read each time rather than kept


def _read_settings(
    failures_text: str | None, open_for_text: str | None, defaults: BreakerSettings
) -> BreakerSettings:
    failures, open_for = defaults.failures, defaults.open_for
    if failures_text:
        with contextlib.suppress(ValueError):
            failures = min(max(int(failures_text), 1), 1000)
    if open_for_text:
        with contextlib.suppress(ValueError):
            open_for = min(max(parse_duration(open_for_text), 0.01), defaults.max_open_for)
    return BreakerSettings(failures, open_for, defaults.max_open_for)


_settings_kept = functools.lru_cache(maxsize=SETTINGS_KEPT)(_read_settings)


class Breaker:
    """CLOSED: every call runs; `failures` consecutive availability failures open it.
    OPEN: nothing runs until `open_for` has passed, then HALF_OPEN: one probe runs; its success
    closes the breaker (and resets the period), its failure opens it again for twice as long."""

    __slots__ = ("failures", "generation", "open_for", "probing", "settings", "state", "until")

    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self.state = BreakerState.CLOSED
        self.generation = 0
        self.failures = 0  # consecutive availability failures while closed
        self.open_for = settings.open_for
        self.until = 0.0  # OPEN: when it turns half-open
        self.probing = False  # HALF_OPEN: the one probe is running

    def tick(self, now: float) -> Change | None:
        """An open breaker whose period is over turns half-open."""
        if self.state is BreakerState.OPEN and now >= self.until:
            return self._move(BreakerState.HALF_OPEN, "open period over, letting one probe through")
        return None

    def room(self) -> int | None:
        """Calls that may start now (after `tick`): None for no bound (closed)."""
        if self.state is BreakerState.CLOSED:
            return None
        return 0 if self.state is BreakerState.OPEN or self.probing else 1

    def admit(self) -> bool:
        """A call wants to start (after `tick`): True if it may (half-open: it is the probe)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.room() != 1:
            return False
        self.probing = True
        return True

    def record(self, generation: int, available: bool | None, now: float) -> Change | None:
        """The outcome of a call started in `generation`; a change of state, if it made one."""
        if available is None or generation != self.generation:
            return None
        if self.state is BreakerState.CLOSED:
            if available:
                self.failures = 0
                return None
            self.failures += 1
            if self.failures < self.settings.failures:
                return None
            return self._open(now, f"{self.failures} consecutive availability failures")
        if self.state is BreakerState.HALF_OPEN and self.probing:
            self.probing = False
            if available:
                self.open_for = self.settings.open_for
                self.failures = 0
                return self._move(BreakerState.CLOSED, "the probe succeeded")
            self.open_for = min(self.open_for * 2, self.settings.max_open_for)
            return self._open(now, "the probe failed")
        return None

    def record_attempt(self, generation: int, result: Attempt) -> tuple[bool | None, Change | None]:
        """Tell the breaker how an attempt of `generation` went: whether it showed the function
        up (None: the answer says neither), and the change of state it made, if any. A success
        on a closed breaker that saw no failure changes nothing and reads no clock."""
        if result.ok:
            if not (self.state or self.failures):
                return True, None
            return True, self.record(generation, True, time.monotonic())
        up = availability(
            result.status,
            result.headers,
            error=result.error,
            timed_out=result.timed_out,
            final=result.final,
        )
        return up, self.record(generation, up, time.monotonic())

    def probe_ended(self) -> None:
        """The probe ended without telling up from down (not sent, or overload): the next call
        may probe instead."""
        if self.state is BreakerState.HALF_OPEN:
            self.probing = False

    def configure(self, settings: BreakerSettings) -> None:
        """New settings (a function's annotations changed); the state is kept."""
        if settings is not self.settings and settings != self.settings:
            self.settings = settings
            if self.state is BreakerState.CLOSED:
                self.open_for = settings.open_for

    def _open(self, now: float, reason: str) -> Change:
        self.until = now + self.open_for
        return self._move(BreakerState.OPEN, f"{reason}; open for {self.open_for:g}s")

    def _move(self, state: BreakerState, reason: str) -> Change:
        self.state = state
        self.generation += 1
        self.probing = False
        return Change(state, reason)

"""Functions paused by hand, kept in NATS so every worker replica honours a pause and it
survives restarts (`ferry functions pause`, `POST /system/queues/{function}/pause`).

One key-value bucket (`function_state_bucket`, history 1): a paused function has the key
`paused.{token}` (its subject token, `asyncq.layout.subject_token`), whose value names it and
says when and by whom; resuming purges the key. A worker follows the bucket through one watch
into a bounded set; while a function is in it, its lane pulls nothing and running calls end.

Workers also write there why a function's calls wait: `breaker.{token}` holds the last state
change of its circuit breaker that a worker reported (open or half-open, when, why), and is
purged when it closes. The gateway reads both to tell why a queued call waits. A breaker key
older than `BREAKER_STALE_AFTER` (a worker that stopped while its breaker was open) is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from asyncq.layout import subject_token
from connectors.jetstream.connect import describe
from connectors.jetstream.setup import ensure_key_value

log = logging.getLogger("ferry.function_state")

DEFAULT_BUCKET = "ferry-functions"
PAUSED_PREFIX = "paused."
BREAKER_PREFIX = "breaker."
BREAKER_STALE_AFTER = 1800.0  # longer than any open period (at most 10m) twice over
MAX_REASON = 200
MAX_PAUSED = 10_000  # functions a worker keeps paused at once; a pause past it is refused
MAX_NAME = 512
WATCH_RETRY_SECONDS = 1.0


class PauseRefused(Exception):
    """A pause that cannot be stored (too many paused, or a name too long); one line."""


@dataclass(frozen=True)
class PausedFunction:
    function: str
    paused_at: str
    by: str = ""

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()


def decode(data: bytes | None) -> PausedFunction | None:
    """A stored pause, or None for what is not one (a value written by something else)."""
    try:
        raw = json.loads(data or b"")
        return PausedFunction(
            str(raw["function"])[:MAX_NAME], str(raw["paused_at"]), str(raw.get("by", ""))
        )
    except (ValueError, KeyError, TypeError):
        return None


def pause_key(function: str) -> str:
    return PAUSED_PREFIX + subject_token(function)


@dataclass(frozen=True)
class BreakerRecord:
    """A worker's report that a function's breaker is open or half-open."""

    function: str
    state: str  # "open" or "half-open"
    since: str  # when it changed to that state (UTC, ISO 8601)
    reason: str
    written: float = 0.0  # Unix seconds

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @property
    def waiting(self) -> str:
        """Why a call of this function waits, in a line."""
        if self.state == "open":
            return f"breaker open since {self.since} ({self.reason})"
        return f"breaker half-open since {self.since}: one probe call at a time ({self.reason})"


def decode_breaker(data: bytes | None) -> BreakerRecord | None:
    try:
        raw = json.loads(data or b"")
        return BreakerRecord(
            str(raw["function"])[:MAX_NAME],
            str(raw["state"])[:16],
            str(raw["since"])[:32],
            str(raw.get("reason", ""))[:MAX_REASON],
            float(raw.get("written", 0.0)),
        )
    except (ValueError, KeyError, TypeError):
        return None


def breaker_key(function: str) -> str:
    return BREAKER_PREFIX + subject_token(function)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class FunctionStates:
    """Read and change the pauses; follow them (`follow`) in a worker."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, replicas: int) -> FunctionStates:
        """The bucket, made if missing (no TTL: a pause lasts until it is resumed)."""
        return cls(await ensure_key_value(js, bucket, ttl=0, history=1, replicas=replicas))

    async def pause(self, function: str, by: str = "") -> PausedFunction:
        if not function or len(function) > MAX_NAME:
            raise PauseRefused(f"a function name is 1 to {MAX_NAME} characters")
        if len(await self.paused()) >= MAX_PAUSED:
            raise PauseRefused(f"{MAX_PAUSED} functions are paused already: resume some first")
        now = utc_now()
        entry = PausedFunction(function, now, by[:64])
        await self.kv.put(pause_key(function), entry.encode())
        return entry

    async def report_breaker(self, function: str, state: str, reason: str) -> None:
        """A worker's breaker of `function` changed to `state` ("closed" purges the key)."""
        if not function or len(function) > MAX_NAME:
            return
        if state == "closed":
            await self.kv.purge(breaker_key(function))
            return
        record = BreakerRecord(function, state, utc_now(), reason[:MAX_REASON], time.time())
        await self.kv.put(breaker_key(function), record.encode())

    async def breaker(self, function: str) -> BreakerRecord | None:
        """The last open or half-open state a worker reported, unless it closed or went stale."""
        try:
            entry = await self.kv.get(breaker_key(function))
        except KeyNotFoundError:
            return None
        record = decode_breaker(entry.value)
        if record is None or time.time() - record.written > BREAKER_STALE_AFTER:
            return None
        return record

    async def resume(self, function: str) -> bool:
        """True if the function was paused."""
        was = await self.state(function)
        if was is not None:
            await self.kv.purge(pause_key(function))
        return was is not None

    async def state(self, function: str) -> PausedFunction | None:
        try:
            entry = await self.kv.get(pause_key(function))
        except KeyNotFoundError:
            return None
        return decode(entry.value)

    async def paused(self) -> list[PausedFunction]:
        """Every paused function, by name."""
        watcher = await self.kv.watch(PAUSED_PREFIX + ">", ignore_deletes=True)
        found: dict[str, PausedFunction] = {}
        try:
            async for update in watcher:
                if update is None:
                    break
                if (entry := decode(update.value)) is not None:
                    found[update.key] = entry
                if not update.delta:
                    break
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return sorted(found.values(), key=lambda entry: entry.function)

    async def follow(
        self, changed: Callable[[frozenset[str]], None], synced: asyncio.Event
    ) -> None:
        """Call `changed` with the names of the paused functions whenever they change, for as
        long as the caller runs this (a task); `synced` is set once the first full set is known.
        A watch that fails is made again, from the start; meanwhile the last set stands."""
        warned = False
        while True:
            try:
                watcher = await self.kv.watch(PAUSED_PREFIX + ">")
                warned = False
                try:
                    await self._follow(watcher, changed, synced)
                finally:
                    with contextlib.suppress(Exception):
                        await watcher.stop()  # type: ignore[no-untyped-call]
            except (NatsError, TimeoutError) as exc:
                if not warned:
                    log.warning("cannot watch paused functions: %s", describe(exc))
                    warned = True
            await asyncio.sleep(WATCH_RETRY_SECONDS)

    async def _follow(
        self, watcher: Any, changed: Callable[[frozenset[str]], None], synced: asyncio.Event
    ) -> None:
        names: dict[str, str] = {}  # key -> function
        initial = True
        async for update in watcher:
            if update is not None:
                entry = decode(update.value) if update.operation is None else None
                if entry is None:
                    names.pop(update.key, None)
                elif update.key in names or len(names) < MAX_PAUSED:
                    names[update.key] = entry.function
            if update is None or not update.delta or not initial:
                initial = False
                changed(frozenset(names.values()))
                synced.set()


WAITING_LOOKUP_SECONDS = 2.0


async def why_waiting(states: FunctionStates, function: str) -> str:
    """Why a queued call of `function` waits: paused by hand, or its breaker open; "" when
    neither (or when NATS does not say in time: the answer goes without it)."""
    try:
        async with asyncio.timeout(WAITING_LOOKUP_SECONDS):
            paused = await states.state(function)
            if paused is not None:
                by = f" by {paused.by}" if paused.by else ""
                return f"function paused by hand since {paused.paused_at}{by}"
            breaker = await states.breaker(function)
    except (NatsError, TimeoutError):
        return ""
    return breaker.waiting if breaker is not None else ""


async def why_waiting_in(js: JetStreamContext, bucket: str, function: str) -> str:
    """`why_waiting` from the bucket by name ("" if it does not exist or cannot be read)."""
    try:
        async with asyncio.timeout(WAITING_LOOKUP_SECONDS):
            kv = await js.key_value(bucket)
    except (NatsError, TimeoutError):
        return ""
    return await why_waiting(FunctionStates(kv), function)


WAITING_STATES = frozenset({"queued"})  # the ledger states of a call that has not started

"""Functions paused by hand, kept in NATS so every worker replica honours a pause and it
survives restarts (`ferry functions pause`, `POST /system/queues/{function}/pause`).

One key-value bucket (`function_state_bucket`, history 1): a paused function has the key
`paused.{token}` (its subject token, `asyncq.layout.subject_token`), whose value names it and
says when and by whom; resuming purges the key. A worker follows the bucket through one watch
into a bounded set; while a function is in it, its lane pulls nothing and running calls end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        entry = PausedFunction(function, now, by[:64])
        await self.kv.put(pause_key(function), entry.encode())
        return entry

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

"""Writes ledger changes in the background, so no invocation ever waits on the ledger.

A change is published straight to the bucket's subject with a reply subject under one inbox
of the writer's own; JetStream's acknowledgements come back there and are only checked for
errors, never awaited. This costs a fraction of nats-py's `js.publish` (no future, no task, no
parsed PubAck per write) and needs no task per write. The writes of one call cannot overtake
each other: they leave in order on one connection. Each write is one JetStream round trip.

Bounded: at most `limit` changes wait to be sent or confirmed. A newer change for a key still
waiting replaces it; when full, the oldest intermediate change is dropped (a later one
supersedes it), a final change only when nothing else waits; both are counted. Writes that
fail (an error answer, no responders: the bucket is gone, or no answer in `ACK_TIMEOUT`) are
counted and logged at most once per `LOG_EVERY_SECONDS`, never per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from prometheus_client import CollectorRegistry, Counter

from connectors.jetstream.connect import describe

log = logging.getLogger("ferry.ledger")

LOG_EVERY_SECONDS = 60.0
ACK_TIMEOUT = 5.0
DEFAULT_LIMIT = 8192
HOLD_SECONDS = 0.05
WRONG_LAST_SEQUENCE = (b"10071", b"10164")  # `create` found an entry: a worker got there first
_EXPECT_NONE = {"Nats-Expected-Last-Subject-Sequence": "0"}
_DELETE = {"KV-Operation": "DEL"}


class LedgerMetrics:
    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.states = Counter(
            f"{prefix}_call_ledger_states_total",
            "Call state changes handed to the call ledger, by new state",
            ["state"],
            registry=registry,
        )
        self.write_failures = Counter(
            f"{prefix}_call_ledger_write_failures_total",
            "Call ledger writes that failed (the calls ran on)",
            registry=registry,
        )
        self.dropped = Counter(
            f"{prefix}_call_ledger_dropped_total",
            "Call state changes not written because the writer's queue was full",
            registry=registry,
        )


class Op(enum.Enum):
    PUT = "put"  # the worker owns the entry: write whatever is there
    CREATE = "create"  # the front door: only if no entry exists yet (a worker may be first)
    DELETE = "delete"


class Encodable(Protocol):
    def encode(self) -> bytes: ...


@dataclass(slots=True)
class Change:
    """One write. `value` is encoded only when it is sent, so a superseded one costs nothing.
    A `held` change waits `HOLD_SECONDS` first, in case a later one makes it moot (a fast
    call's `running`, or an answer whose callback outcome is about to follow)."""

    op: Op
    value: Encodable | bytes = b""
    final: bool = False
    held: bool = False


def _final(item: Change | tuple[Change, float]) -> bool:
    return (item[0] if isinstance(item, tuple) else item).final


class LedgerWriter:
    def __init__(
        self,
        nc: Client,
        bucket: str,
        *,
        on_failure: Callable[[], None],
        on_drop: Callable[[], None],
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self.nc = nc
        self.prefix = f"$KV.{bucket}."
        self.on_failure = on_failure
        self.on_drop = on_drop
        self.limit = limit
        self._pending: OrderedDict[str, Change] = OrderedDict()  # to send now
        self._held: OrderedDict[str, tuple[Change, float]] = OrderedDict()  # to send when due
        self._unconfirmed: OrderedDict[int, float] = OrderedDict()  # write number -> sent at
        self._inbox = f"_INBOX.ledger{os.urandom(8).hex()}."
        self._next = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_log = 0.0
        self._unlogged = 0

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self._inbox + "*", cb=self._answered)
        self._task = asyncio.create_task(self._send(), name="ledger-writer")

    def submit(self, key: str, change: Change) -> None:
        """Queue a change without waiting; never raises. It replaces any still waiting for
        the same key (one key is in at most one of the two queues)."""
        replaced = self._pending.pop(key, None) or self._held.pop(key, None)
        if replaced is None and self._waiting() >= self.limit:
            self._drop_one()
        if change.held:
            self._held[key] = (change, time.monotonic() + HOLD_SECONDS)
        else:
            self._pending[key] = change
            self._wake.set()
        self._idle.clear()

    def _waiting(self) -> int:
        return len(self._pending) + len(self._held) + len(self._unconfirmed)

    def _drop_one(self) -> None:
        for queue in (self._held, self._pending):
            victim = next((k for k, c in queue.items() if not _final(c)), None)
            if victim is not None:
                del queue[victim]
                self.on_drop()
                return
        for queue in (self._held, self._pending):
            if queue:
                del queue[next(iter(queue))]
                self.on_drop()
                return

    async def close(self, timeout: float = 2.0) -> None:
        """Send what is waiting and hear its answers (within `timeout`), then stop."""
        for key, (change, _) in list(self._held.items()):  # no point holding any longer
            self._pending[key] = change
        self._held.clear()
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sub is not None:
            with contextlib.suppress(NatsError):
                await self._sub.unsubscribe()

    # -- sending ----------------------------------------------------------------------------

    async def _send(self) -> None:
        while True:
            wait = HOLD_SECONDS if self._held else 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()
            self._expire()
            self._release_due()
            while self._pending and len(self._unconfirmed) < self.limit:
                key, change = self._pending.popitem(last=False)
                await self._publish(key, change)
            self._settle()

    def _release_due(self) -> None:
        """Held changes whose time has come join the ones to send (they are in due order)."""
        now = time.monotonic()
        held = self._held
        while held:
            key, (change, due) = next(iter(held.items()))
            if due > now:
                break
            del held[key]
            self._pending[key] = change

    async def _publish(self, key: str, change: Change) -> None:
        self._next += 1
        number = self._next
        headers = _EXPECT_NONE if change.op is Op.CREATE else None
        if change.op is Op.DELETE:
            headers = _DELETE
        value = change.value if isinstance(change.value, bytes) else change.value.encode()
        try:
            await self.nc.publish(
                self.prefix + key, value, reply=f"{self._inbox}{number}", headers=headers
            )
        except (NatsError, OSError) as exc:
            self._failed(exc)
            return
        self._unconfirmed[number] = time.monotonic()

    async def _answered(self, msg: Msg) -> None:
        try:
            number = int(msg.subject[len(self._inbox) :])
        except ValueError:
            return
        if self._unconfirmed.pop(number, None) is None:
            return  # counted as failed already (no answer in time)
        if msg.headers and msg.headers.get("Status") == "503":
            self._failed(RuntimeError("no responders: the ledger's bucket is not there"))
        elif b'"error":' in msg.data[:64] and not any(c in msg.data for c in WRONG_LAST_SEQUENCE):
            self._failed(RuntimeError(msg.data[:200].decode("utf-8", "replace")))
        self._settle()

    def _expire(self) -> None:
        deadline = time.monotonic() - ACK_TIMEOUT
        while self._unconfirmed:
            number, sent = next(iter(self._unconfirmed.items()))
            if sent > deadline:
                break
            del self._unconfirmed[number]
            self._failed(TimeoutError("no answer from JetStream"))
        self._settle()

    def _settle(self) -> None:
        if not self._pending and not self._unconfirmed and not self._held:
            self._idle.set()
        elif self._pending and len(self._unconfirmed) < self.limit:
            self._wake.set()  # room again for what waits

    def _failed(self, error: BaseException) -> None:
        self.on_failure()
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_SECONDS:
            log.warning(
                "call ledger: %d write(s) failed since the last report (calls run on): %s",
                self._unlogged,
                describe(error),
            )
            self._last_log = now
            self._unlogged = 0

"""Writes ledger changes in the background, so no invocation ever waits on the ledger.

Changes are published straight to the bucket's subject, in batches of up to `BATCH` (what
waits when the writer's task runs, or what comes within `gather` seconds of a first change, cut
short once a whole batch waits or the writer closes);
only the last of a batch carries a reply subject (under one inbox of the
writer's own), and JetStream's answer to it stands for the batch: one stream takes one
connection's messages in order, and what makes a write fail (the bucket gone, no stream leader,
the stream full) fails its neighbours too. That answer is only checked for errors, never
awaited. This costs a fraction of nats-py's `js.publish` (no future, no task, no parsed PubAck
per write, and one answer for many writes). The writes of one call cannot overtake each other:
they leave in order on one connection. Entries given a `group` (their call's sheet prefix) that
leave two or more to a group in one batch go out together as a state sheet
(`ledger.state_sheets`): one stored message for all of them.

Bounded: at most `limit` changes wait to be sent or confirmed. A newer change for a key still
waiting replaces it; when full, the oldest intermediate change is dropped (a later one
supersedes it), a final change only when nothing else waits; both are counted. When a batch's
answer is an error, no responders (the bucket is gone) or does not come in `ACK_TIMEOUT`,
every write of the batch is counted as failed (a write that failed alone inside a batch whose
last write landed goes uncounted); failures are logged at most once per `LOG_EVERY_SECONDS`,
never per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from prometheus_client import CollectorRegistry, Counter

from connectors.core.loop_metrics import LoopCounter
from connectors.core.supervision import cancel_and_wait
from connectors.jetstream.connect import describe
from ledger.state_sheets import STATE_PREFIX, STATE_SHEET_MAX_BYTES, encode_state_sheet, sheet_runs

log = logging.getLogger("ferry.ledger")

LOG_EVERY_SECONDS = 60.0
ACK_TIMEOUT = 5.0
DEFAULT_LIMIT = 8192
HOLD_SECONDS = 0.05
WRONG_LAST_SEQUENCE = (b"10071", b"10164")  # `create` found an entry: a worker got there first
BATCH = 256  # changes sent together; JetStream's answer to the last stands for them all


class LedgerMetrics:
    def __init__(self, registry: CollectorRegistry, prefix: str, states: Iterable[str]) -> None:
        # two to four changes a call: plain numbers, not a Counter child's lock each time
        self.states = LoopCounter(
            registry,
            f"{prefix}_call_ledger_states",
            "Call state changes handed to the call ledger, by new state",
            ["state"],
            known=[(state,) for state in states],
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


_HEADERS: dict[Op, dict[str, str] | None] = {
    Op.PUT: None,
    Op.CREATE: {"Nats-Expected-Last-Subject-Sequence": "0"},
    Op.DELETE: {"KV-Operation": "DEL"},
}


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
    group: str | None = None  # the call's sheet prefix: gathered on a state sheet


def _final(item: Change | tuple[Change, float]) -> bool:
    return (item[0] if isinstance(item, tuple) else item).final


class LedgerWriter:
    def __init__(
        self,
        nc: Client,
        bucket: str,
        *,
        on_failure: Callable[[int], None],
        on_drop: Callable[[], None],
        limit: int = DEFAULT_LIMIT,
        gather: float = 0.0,
    ) -> None:
        self.nc = nc
        self.gather = gather
        self.prefix = f"$KV.{bucket}."
        self.on_failure = on_failure
        self.on_drop = on_drop
        self.limit = limit
        self._pending: OrderedDict[str, Change] = OrderedDict()  # to send now
        self._held: OrderedDict[str, tuple[Change, float]] = OrderedDict()  # to send when due
        # batch number -> (sent at, changes in it), and how many changes that is in all
        self._unconfirmed: OrderedDict[int, tuple[float, int]] = OrderedDict()
        self._in_flight = 0
        self._id = os.urandom(6).hex()  # names this writer's state sheets
        self._inbox = f"_INBOX.ledger{os.urandom(8).hex()}."
        self._next = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()  # a whole batch waits (or the writer closes): stop gathering
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._sub: Subscription | None = None
        self._busy = asyncio.Event()  # something is held or unconfirmed: the timer runs
        self._tasks: list[asyncio.Task[None]] = []
        self._last_log = 0.0
        self._unlogged = 0

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self._inbox + "*", cb=self._answered)
        self._tasks = [
            asyncio.create_task(self._send(), name="ledger-writer"),
            asyncio.create_task(self._tick(), name="ledger-writer-timer"),
        ]

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The writer's background tasks, for the process to watch (one that ends is a bug)."""
        return list(self._tasks)

    def submit(self, key: str, change: Change) -> None:
        """Queue a change without waiting; never raises. It replaces any still waiting for
        the same key (one key is in at most one of the two queues)."""
        replaced = self._pending.pop(key, None) or self._held.pop(key, None)
        if replaced is None and self._waiting() >= self.limit:
            self._drop_one()
        if change.held:
            self._held[key] = (change, time.monotonic() + HOLD_SECONDS)
            self._busy.set()
        else:
            self._pending[key] = change
            self._wake.set()
            if len(self._pending) >= BATCH:
                self._full.set()
        self._idle.clear()

    def _waiting(self) -> int:
        return len(self._pending) + len(self._held) + self._in_flight

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
        self._closing = True
        self._wake.set()
        self._full.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        await cancel_and_wait(*self._tasks)
        if self._sub is not None:
            with contextlib.suppress(NatsError):
                await self._sub.unsubscribe()

    # -- sending ----------------------------------------------------------------------------

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            if self.gather and not self._closing and len(self._pending) < BATCH:
                # let a busy process's changes gather, until a whole batch waits
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.gather):
                        await self._full.wait()
            self._wake.clear()
            while self._pending and self._in_flight < self.limit:
                await self._publish_batch()
            self._settle()

    async def _tick(self) -> None:
        """Every `HOLD_SECONDS` while anything is held or unconfirmed: release what is due
        and give up on answers that did not come; asleep otherwise (no timer per write)."""
        while True:
            if not self._held and not self._unconfirmed:
                self._busy.clear()
                await self._busy.wait()
            await asyncio.sleep(HOLD_SECONDS)
            self._expire()
            self._release_due()
            if self._pending:
                self._wake.set()

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

    async def _publish_batch(self) -> None:
        """Send up to `BATCH` changes (the entries of one sheet's calls together, on state sheets);
        only the last message asks JetStream for an answer, which then stands for the whole
        batch (one stream takes them in order on one connection)."""
        pending = self._pending
        batch: list[tuple[str, dict[str, str] | None, bytes]] = []
        groups: dict[str, list[tuple[str, bytes]]] = {}  # grouped entries by sheet prefix
        changes = 0
        for _ in range(min(len(pending), BATCH)):
            key, change = pending.popitem(last=False)
            try:
                value = change.value if isinstance(change.value, bytes) else change.value.encode()
            except Exception as exc:  # an entry that cannot be encoded must not stop the ledger
                self._failed(exc, 1)
                continue
            if len(value) > self.nc.max_payload:  # NATS would refuse it, and the batch with it
                self._failed(ValueError(f"entry of {len(value)} bytes is over max_payload"), 1)
                continue
            changes += 1
            if change.group is not None and change.op is Op.PUT:
                groups.setdefault(change.group, []).append((key, value))
            else:
                batch.append((self.prefix + key, _HEADERS[change.op], value))
        if not changes:
            return
        self._next += 1
        number = self._next
        batch.extend(self._state_sheets(groups, number))
        last = len(batch) - 1
        try:
            for index, (subject, headers, value) in enumerate(batch):
                reply = f"{self._inbox}{number}" if index == last else ""
                await self.nc.publish(subject, value, reply=reply, headers=headers)
        except (NatsError, OSError) as exc:
            self._failed(exc, changes)  # none of them will be confirmed
            return
        self._unconfirmed[number] = (time.monotonic(), changes)
        self._in_flight += changes
        self._busy.set()

    def _state_sheets(
        self, groups: dict[str, list[tuple[str, bytes]]], number: int
    ) -> list[tuple[str, dict[str, str] | None, bytes]]:
        """The messages for a batch's grouped entries: a sheet prefix's two or more on state
        sheets (`ledger.state_sheets`), a lone one under its own key."""
        sent: list[tuple[str, dict[str, str] | None, bytes]] = []
        limit = min(STATE_SHEET_MAX_BYTES, self.nc.max_payload)
        for group, found in groups.items():
            for part, run in enumerate(sheet_runs(found, limit)):
                if len(run) == 1:  # alone in the batch, or too big to share a sheet
                    key, value = run[0]
                    sent.append((self.prefix + key, None, value))
                else:
                    subject = f"{self.prefix}{STATE_PREFIX}{group}.{self._id}-{number}-{part}"
                    sent.append((subject, None, encode_state_sheet([v for _, v in run])))
        return sent

    async def _answered(self, msg: Msg) -> None:
        try:
            number = int(msg.subject[len(self._inbox) :])
        except ValueError:
            return
        batch = self._unconfirmed.pop(number, None)
        if batch is None:
            return  # counted as failed already (no answer in time)
        count = batch[1]
        self._in_flight -= count
        if msg.headers and msg.headers.get("Status") == "503":
            self._failed(RuntimeError("no responders: the ledger's bucket is not there"), count)
        elif b'"error":' in msg.data[:64] and not any(c in msg.data for c in WRONG_LAST_SEQUENCE):
            self._failed(RuntimeError(msg.data[:200].decode("utf-8", "replace")), count)
        self._settle()

    def _expire(self) -> None:
        deadline = time.monotonic() - ACK_TIMEOUT
        while self._unconfirmed:
            number, (sent, count) = next(iter(self._unconfirmed.items()))
            if sent > deadline:
                break
            del self._unconfirmed[number]
            self._in_flight -= count
            self._failed(TimeoutError("no answer from JetStream"), count)
        self._settle()

    def _settle(self) -> None:
        if not self._pending and not self._unconfirmed and not self._held:
            self._idle.set()
        elif self._pending and self._in_flight < self.limit:
            self._wake.set()  # room again for what waits

    def _failed(self, error: BaseException, count: int) -> None:
        self.on_failure(count)
        self._unlogged += count
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_SECONDS:
            log.warning(
                "call ledger: %d write(s) failed since the last report (calls run on): %s",
                self._unlogged,
                describe(error),
            )
            self._last_log = now
            self._unlogged = 0

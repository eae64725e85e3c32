"""The queue worker's side of the call ledger: state changes out, cancel markers in.

Every change is handed to a `LedgerWriter` and never awaited. The worker owns an entry once it
runs the call, so it writes whole entries (`put`) built from the message alone: a call queued
by the Go gateway, `ferry publish` or any other client gets its entry too. Cancel markers come
in through one filtered watch into a bounded local set, so the check before each attempt costs
no round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry

from asyncq.codec import QueueRequest
from connectors.core.invoker import InvocationResult
from connectors.core.supervision import cancel_and_wait
from connectors.jetstream.connect import describe
from ledger.bucket import bucket_handle, open_or_handle
from ledger.entries import (
    CANCEL_PREFIX,
    ENTRY_PREFIX,
    MAX_TOKEN,
    CallEntry,
    CallState,
    call_token,
    rfc3339,
)
from ledger.queued import base_entry
from ledger.settings import CallLedgerSettings
from ledger.state_sheets import sheet_group
from ledger.writer import HOLD_SECONDS, Change, Encodable, LedgerMetrics, LedgerWriter, Op
from queue_worker.finished_entry import Finished

log = logging.getLogger("ferry.ledger")

CANCELLED_REMEMBERED = 100_000
RUNNING_KEPT = 65_536
TOKENS_KEPT = 4096
GATHER_SECONDS = 0.02  # a final state waits up to this long to leave with others (less when a
# whole batch waits): fewer, fuller writes cost nats-server less (bench/README.md, "Call ledger")
INITIAL_SYNC_SECONDS = 5.0
WATCH_RETRY_SECONDS = 1.0  # with WATCH_CHECK_SECONDS, within ledger.fence.REWATCH_SECONDS
# How often the worker checks that the bucket it watches is still the same one: a bucket deleted
# and made again leaves nats-py's watch silently past the new markers.
WATCH_CHECK_SECONDS = 1.0


class WorkerLedger:
    """Hooks the queue worker calls; all of them return at once."""

    def __init__(
        self, settings: CallLedgerSettings, registry: CollectorRegistry, *, replicas: int
    ) -> None:
        self.settings = settings
        self.replicas = replicas
        written = [state for state in CallState if state is not CallState.QUEUED]
        self.metrics = LedgerMetrics(registry, "queue_worker", written)
        self.enabled = settings.call_ledger
        self._result_limit = settings.result_limit
        self._writer: LedgerWriter | None = None
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        # call id -> (key token, entry key, state-sheet group), of the calls seen lately
        self._ids: dict[str, tuple[str, str, str | None]] = {}
        # key token -> (call, attempt, started) of the attempts under way, so a cancel marker
        # for one of them is answered at once with `running` (the cancel then says 409)
        self._running: dict[str, tuple[QueueRequest, int, float]] = {}
        # key token -> when its `running` is due: written only if the attempt outlasts
        # HOLD_SECONDS (a fast call's final state makes it moot), oldest first
        self._unshown: dict[str, float] = {}
        self._unshown_wake = asyncio.Event()
        self._shower: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()

    async def start(self, nc: Client, js: JetStreamContext) -> None:
        """Open the bucket (or run without it) and wait, bounded, until the cancel markers
        already written are known, so a call cancelled before this worker started is skipped."""
        if not self.enabled:
            return
        bucket = self.settings.call_ledger_bucket
        kv = await open_or_handle(js, self.settings, self.replicas, who="queue worker")
        if kv is not None:  # None: the bucket must not be written (it could not be bounded)
            self._writer = LedgerWriter(
                nc,
                bucket,
                on_failure=self.metrics.write_failures.inc,
                on_drop=self.metrics.dropped.inc,
                gather=GATHER_SECONDS,
            )
            await self._writer.start()
            self._shower = asyncio.create_task(self._show_running(), name="ledger-running")
        watch = self._watch_cancels(kv or bucket_handle(js, bucket), js)
        self._watch = asyncio.create_task(watch, name="ledger-cancels")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(INITIAL_SYNC_SECONDS):
                await self._synced.wait()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The cancel watch and the writer's tasks: if one ends, cancels or writes stop."""
        own = [task for task in (self._watch, self._shower) if task is not None]
        return own + (self._writer.tasks if self._writer is not None else [])

    async def close(self) -> None:
        await cancel_and_wait(*(task for task in (self._watch, self._shower) if task))
        if self._writer is not None:
            await self._writer.close()

    # -- hooks --------------------------------------------------------------------------------

    def is_cancelled(self, request: QueueRequest) -> bool:
        return self.enabled and self._id_of(request.call_id)[0] in self._cancelled

    def running(self, request: QueueRequest, attempt: int) -> None:
        call_id = request.call_id
        if self._writer is None or not call_id:
            return
        token = self._id_of(call_id)[0]
        now = time.time()
        running = self._running
        if len(running) >= RUNNING_KEPT:  # attempts handed back unfinished never end here
            oldest = next(iter(running))
            del running[oldest]
            self._unshown.pop(oldest, None)
        running[token] = (request, attempt, now)
        self.metrics.states.inc(CallState.RUNNING)
        if token in self._cancelled:
            # its cancel marker came while it was being started: written at once, under its
            # own key, so that the cancel sees it runs
            self._write_running(request, attempt, now, alone=True)
        else:  # written only if it outlasts the hold: a fast answer makes it moot
            self._unshown.pop(token, None)  # a second start goes to the back, in due order
            self._unshown[token] = time.monotonic() + HOLD_SECONDS
            self._unshown_wake.set()

    async def _show_running(self) -> None:
        """Every `HOLD_SECONDS` while attempts wait to be shown: write `running` for those
        begun a hold ago that have not ended (asleep otherwise)."""
        unshown = self._unshown
        while True:
            if not unshown:
                self._unshown_wake.clear()
                await self._unshown_wake.wait()
            await asyncio.sleep(HOLD_SECONDS)
            now = time.monotonic()
            while unshown:
                token, due = next(iter(unshown.items()))
                if due > now:
                    break
                del unshown[token]
                attempt = self._running.get(token)
                if attempt is not None:
                    self._write_running(*attempt)

    def _write_running(
        self, request: QueueRequest, attempt: int, started: float, *, alone: bool = False
    ) -> None:
        """Write `running` now (counted already, when the attempt began); `alone`: under the
        call's own key, never on a state sheet (what a cancel must see)."""

        def build() -> CallEntry:
            entry = base_entry(request, CallState.RUNNING, attempt, started)
            entry.started_at = entry.updated_at
            return entry

        self._put(request, CallState.RUNNING, _Deferred(build), counted=False, alone=alone)

    def retrying(self, request: QueueRequest, result: InvocationResult, delay: float) -> None:
        now = time.time()

        def build() -> CallEntry:
            entry = base_entry(request, CallState.RETRYING, result.attempt, now)
            entry.status = result.status
            entry.error = result.error or None
            entry.started_at = rfc3339(now - result.duration)
            entry.next_attempt_at = rfc3339(now + delay)
            return entry

        self._put(request, CallState.RETRYING, _Deferred(build))

    def finished(
        self,
        request: QueueRequest,
        result: InvocationResult,
        *,
        succeeded: bool,
        callback_outcome: str | None = None,
    ) -> None:
        state = CallState.SUCCEEDED if succeeded else CallState.FAILED
        outcome = (callback_outcome or "pending") if request.callback else None
        entry = Finished(request, state, result, time.time(), outcome, self._result_limit)
        # with a callback, its outcome usually follows within the hold: one write for both
        pending = outcome == "pending"
        self._put(request, state, entry, final=True, held=pending, counted=not callback_outcome)

    def gave_up(self, request: QueueRequest, attempt: int, reason: str) -> None:
        """A call dead-lettered after errors of ferry's own (no function answer to keep)."""
        now = time.time()

        def build() -> CallEntry:
            entry = base_entry(request, CallState.FAILED, attempt, now)
            entry.error = reason
            entry.finished_at = entry.updated_at
            return entry

        self._put(request, CallState.FAILED, _Deferred(build), final=True)

    def expired(self, request: QueueRequest, attempt: int, reason: str) -> None:
        """A call not invoked (or not retried) because it had expired."""
        now = time.time()

        def build() -> CallEntry:
            entry = base_entry(request, CallState.EXPIRED, attempt, now)
            entry.status = 410
            entry.error = reason
            entry.finished_at = entry.updated_at
            return entry

        self._put(request, CallState.EXPIRED, _Deferred(build), final=True)

    def skipped(self, request: QueueRequest) -> None:
        """A cancelled call acked without a call: say `cancelled` again, in case an earlier
        write of ours (e.g. `retrying`) landed after the cancel."""
        now = time.time()

        def build() -> CallEntry:
            entry = base_entry(request, CallState.CANCELLED, 0, now)
            entry.finished_at = entry.updated_at
            return entry

        self._put(request, CallState.CANCELLED, _Deferred(build), final=True)

    # -- internals ----------------------------------------------------------------------------

    def _put(
        self,
        request: QueueRequest,
        state: CallState,
        value: Encodable,
        *,
        final: bool = False,
        held: bool = False,
        counted: bool = True,
        alone: bool = False,
    ) -> None:
        """Hand a change to the writer; `value` is encoded only if it is written. `counted`
        is false for a second write of the same state (the callback's outcome added). Unless
        `alone`, the change may share a state sheet with others of its call's sheet."""
        writer = self._writer
        call_id = request.call_id
        if writer is None or not call_id:
            return
        token, key, group = self._id_of(call_id)
        if state is not CallState.RUNNING and self._running.pop(token, None) is not None:
            # the attempt is over (or never began): its `running` must not be written after
            self._unshown.pop(token, None)
        if counted:
            self.metrics.states.inc(state)
        writer.submit(key, Change(Op.PUT, value, final, held, None if alone else group))

    def _id_of(self, call_id: str) -> tuple[str, str, str | None]:
        """The call's key token, entry key and state-sheet group, worked out once per call (a
        call has up to five changes and checks)."""
        found = self._ids.get(call_id)
        if found is None:
            group = sheet_group(call_id)
            token = call_id if group is not None else call_token(call_id)  # a sheet's id is plain
            found = (token, ENTRY_PREFIX + token, group)
            if len(call_id) <= MAX_TOKEN:  # a long id is hashed again rather than kept
                if len(self._ids) >= TOKENS_KEPT:
                    self._ids.clear()
                self._ids[call_id] = found
        return found

    async def _watch_cancels(self, kv: KeyValue, js: JetStreamContext) -> None:
        """Follow the cancel markers for as long as the worker runs; watch again from the
        start after a fault, or when the bucket was deleted and made again."""
        stream = f"KV_{self.settings.call_ledger_bucket}"
        warned = False
        while True:
            try:
                made = await _made_at(js, stream)
                watcher = await kv.watch(CANCEL_PREFIX + ">", ignore_deletes=True)
                warned = False
                if await self._follow_while_same(watcher, js, stream, made):
                    continue  # the bucket changed: watch what is there now, from its start
            except (NatsError, TimeoutError) as exc:
                if not warned:  # once per outage, not once a second
                    log.warning("call ledger: cannot watch cancellations: %s", describe(exc))
                    warned = True
            self._synced.set()  # do not hold the worker back when the bucket is not there
            await asyncio.sleep(WATCH_RETRY_SECONDS)

    async def _follow_while_same(
        self, watcher: Any, js: JetStreamContext, stream: str, made: object
    ) -> bool:
        """Follow `watcher` until the bucket is not the one it watches any more (True) or
        the watch ends (False, or what it raised)."""
        follow = asyncio.create_task(self._follow(watcher), name="ledger-cancel-watch")
        try:
            while not follow.done():
                await asyncio.wait({follow}, timeout=WATCH_CHECK_SECONDS)
                if not follow.done() and await _made_at(js, stream) not in (made, _UNKNOWN):
                    log.warning("call ledger: its bucket was deleted or made again; re-watching")
                    return True
            follow.result()
            return False
        finally:
            await cancel_and_wait(follow)
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def _follow(self, watcher: Any) -> None:
        async for update in watcher:
            if update is None:
                self._synced.set()
                continue
            self._remember(update.key[len(CANCEL_PREFIX) :])
            if not update.delta:
                self._synced.set()

    def _remember(self, token: str) -> None:
        self._cancelled[token] = None
        self._cancelled.move_to_end(token)
        while len(self._cancelled) > CANCELLED_REMEMBERED:
            self._cancelled.popitem(last=False)
        attempt = self._running.get(token)
        if attempt is not None:  # it had begun before the marker came: say so at once
            self._unshown.pop(token, None)
            self._write_running(*attempt, alone=True)


_UNKNOWN = object()  # NATS did not answer: nothing is known to have changed


async def _made_at(js: JetStreamContext, stream: str) -> object:
    """When the bucket's stream was made (None if there is none): it changes when the bucket
    is deleted and made again."""
    try:
        return (await js.stream_info(stream)).created
    except NotFoundError:
        return None
    except (NatsError, TimeoutError):
        return _UNKNOWN


class _Deferred:
    """An entry to be built and encoded when (and if) the writer sends it."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], CallEntry]) -> None:
        self.build = build

    def encode(self) -> bytes:
        return self.build().encode()

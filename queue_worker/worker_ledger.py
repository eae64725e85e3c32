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

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry

from asyncq.codec import QueueRequest
from connectors.core.invoker import InvocationResult
from connectors.jetstream.connect import describe
from ledger.entries import (
    CANCEL_PREFIX,
    ENTRY_PREFIX,
    MAX_TOKEN,
    CallEntry,
    CallState,
    StoredResult,
    call_token,
    entry_template,
    function_texts,
    json_text,
    public_url,
    result_json,
    rfc3339,
    start_time_text,
)
from ledger.settings import CallLedgerSettings
from ledger.store import base_entry, open_or_handle
from ledger.writer import Change, Encodable, LedgerMetrics, LedgerWriter, Op

log = logging.getLogger("ferry.ledger")

CANCELLED_REMEMBERED = 100_000
TOKENS_KEPT = 4096
GATHER_SECONDS = 0.005  # a final state waits up to this long to leave with others
INITIAL_SYNC_SECONDS = 5.0
WATCH_RETRY_SECONDS = 2.0
_NOT_KEPT = {"content-length", "transfer-encoding", "connection", "keep-alive"}


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
        self._result_limit = settings.call_result_max_bytes
        self._writer: LedgerWriter | None = None
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._tokens: dict[str, str] = {}  # call id -> key token, of the calls seen lately
        self._watch: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()

    async def start(self, nc: Client, js: JetStreamContext) -> None:
        """Open the bucket (or run without it) and wait, bounded, until the cancel markers
        already written are known, so a call cancelled before this worker started is skipped."""
        if not self.enabled:
            return
        kv = await open_or_handle(js, self.settings, self.replicas, who="queue worker")
        self._writer = LedgerWriter(
            nc,
            self.settings.call_ledger_bucket,
            on_failure=self.metrics.write_failures.inc,
            on_drop=self.metrics.dropped.inc,
            gather=GATHER_SECONDS,
        )
        await self._writer.start()
        self._watch = asyncio.create_task(self._watch_cancels(kv), name="ledger-cancels")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(INITIAL_SYNC_SECONDS):
                await self._synced.wait()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The cancel watch and the writer's tasks: if one ends, cancels or writes stop."""
        own = [self._watch] if self._watch is not None else []
        return own + (self._writer.tasks if self._writer is not None else [])

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        if self._writer is not None:
            await self._writer.close()

    # -- hooks --------------------------------------------------------------------------------

    def is_cancelled(self, request: QueueRequest) -> bool:
        return self.enabled and self._token(request.call_id) in self._cancelled

    def running(self, request: QueueRequest, attempt: int) -> None:
        now = time.time()

        def build() -> CallEntry:
            entry = base_entry(request, CallState.RUNNING, attempt, now)
            entry.started_at = entry.updated_at
            return entry

        # a fast answer makes it moot
        self._put(request, CallState.RUNNING, _Deferred(build), held=True)

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
        entry = _Finished(request, state, result, time.time(), outcome, self._result_limit)
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
    ) -> None:
        """Hand a change to the writer; `value` is encoded only if it is written. `counted`
        is false for a second write of the same state (the callback's outcome added)."""
        writer = self._writer
        call_id = request.call_id
        if writer is None or not call_id:
            return
        if counted:
            self.metrics.states.inc(state)
        key = ENTRY_PREFIX + self._token(call_id)
        writer.submit(key, Change(Op.PUT, value, final, held))

    def _token(self, call_id: str) -> str:
        """`call_token`, worked out once per call (a call has up to five changes and checks)."""
        token = self._tokens.get(call_id)
        if token is None:
            token = call_token(call_id)
            if len(call_id) <= MAX_TOKEN:  # a long id is hashed again rather than kept
                if len(self._tokens) >= TOKENS_KEPT:
                    self._tokens.clear()
                self._tokens[call_id] = token
        return token

    async def _watch_cancels(self, kv: KeyValue) -> None:
        """Follow the cancel markers for as long as the worker runs; re-watch after a fault."""
        while True:
            try:
                watcher = await kv.watch(CANCEL_PREFIX + ">", ignore_deletes=True)
                try:
                    async for update in watcher:
                        if update is None:
                            self._synced.set()
                            continue
                        self._remember(update.key[len(CANCEL_PREFIX) :])
                        if not update.delta:
                            self._synced.set()
                finally:
                    with contextlib.suppress(Exception):
                        await watcher.stop()  # type: ignore[no-untyped-call]
            except (NatsError, TimeoutError) as exc:
                log.warning("call ledger: cannot watch cancellations: %s", describe(exc))
            self._synced.set()  # do not hold the worker back when the bucket is not there
            await asyncio.sleep(WATCH_RETRY_SECONDS)

    def _remember(self, token: str) -> None:
        self._cancelled[token] = None
        self._cancelled.move_to_end(token)
        while len(self._cancelled) > CANCELLED_REMEMBERED:
            self._cancelled.popitem(last=False)


class _Deferred:
    """An entry to be built and encoded when (and if) the writer sends it."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], CallEntry]) -> None:
        self.build = build

    def encode(self) -> bytes:
        return self.build().encode()


class _Finished:
    """A call's final entry with the function's answer, encoded straight from the call and
    its result: the worker writes one for nearly every call, and skipping the `CallEntry` and
    `StoredResult` objects halves the cost. `entry()` builds the same entry the long way; a
    test holds the two equal."""

    __slots__ = ("limit", "now", "outcome", "request", "result", "state")

    def __init__(
        self,
        request: QueueRequest,
        state: CallState,
        result: InvocationResult,
        now: float,
        outcome: str | None,
        limit: int,
    ) -> None:
        self.request = request
        self.state = state
        self.result = result
        self.now = now
        self.outcome = outcome
        self.limit = limit

    def entry(self) -> CallEntry:
        """The entry `encode` writes, built field by field (the reference for tests)."""
        result = self.result
        entry = base_entry(self.request, self.state, result.attempt, self.now)
        entry.status = result.reported_status
        entry.error = result.error or None
        entry.started_at = rfc3339(self.now - result.duration)
        entry.finished_at = entry.updated_at
        entry.callback_outcome = self.outcome
        entry.result_bytes = len(result.body)
        entry.result = stored_result(result, self.limit)
        entry.result_stored = entry.result is not None
        return entry

    def encode(self) -> bytes:
        request, result, now = self.request, self.result, self.now
        body = result.body
        stored = ""
        status = kept_status(result, self.limit)
        if status is not None:
            stored = ',"result":' + result_json(
                status,
                result.headers.get("Content-Type", ""),
                round(result.duration, 6),
                _kept_headers(result),
                body,
            )
        function, namespace, queue = function_texts(request.function, request.queue_name)
        updated = rfc3339(now)
        callback = request.callback
        return _FINISHED.format(
            json_text(request.call_id),
            function,
            self.state.value,
            namespace,
            queue,
            result.attempt,
            result.reported_status,
            json_text(start_time_text(request.start_time)),
            rfc3339(now - result.duration),
            updated,
            updated,
            json_text(public_url(callback)) if callback else "null",
            json_text(self.outcome),
            json_text(result.error or None),
            "true" if stored else "false",
            len(body),
            stored,
        ).encode()


_FINISHED = entry_template(
    {
        "state": '"{}"',
        "attempts": "{:d}",
        "status": "{:d}",
        "started_at": '"{}"',
        "finished_at": '"{}"',
        "next_attempt_at": "null",
        "updated_at": '"{}"',
        "result_bytes": "{:d}",
    }
)


def _kept_headers(result: InvocationResult) -> list[tuple[str, str]]:
    """The answer's headers a stored result keeps (a callback would carry them)."""
    return [(k, v) for k, v in result.headers.items() if k.lower() not in _NOT_KEPT]


def kept_status(result: InvocationResult, limit: int) -> int | None:
    """The status of an answer the ledger keeps (a function answered, within
    `result_max_bytes`), or None when it keeps none."""
    if not limit or len(result.body) > limit:
        return None
    return result.status


def stored_result(result: InvocationResult, limit: int) -> StoredResult | None:
    """The answer as the ledger keeps it, or None when it is not kept."""
    status = kept_status(result, limit)
    if status is None:
        return None
    return StoredResult(
        status=status,
        content_type=result.headers.get("Content-Type", ""),
        duration_seconds=round(result.duration, 6),
        headers=_kept_headers(result),
        body=result.body,
    )

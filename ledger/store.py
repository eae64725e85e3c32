"""Reading and cancelling ledger entries: what the gateway's call routes and `ferry calls` use.

nats-py exceptions stop here: callers see `LedgerUnavailable`, or a plain answer.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from asyncq.codec import QueueRequest
from connectors.core.errors import FerryError, StartupError
from connectors.jetstream.connect import describe
from connectors.jetstream.setup import ensure_key_value
from ledger.entries import (
    ENTRY_PREFIX,
    CallEntry,
    CallState,
    cancel_key,
    entry_key,
    entry_template,
    function_texts,
    json_text,
    now_text,
    public_url,
    rfc3339,
    split_function,
    start_time_text,
)
from ledger.settings import CallLedgerSettings

log = logging.getLogger("ferry.ledger")
T = TypeVar("T")

CANCEL_TRIES = 5  # compare-and-set retries when a worker writes between our read and write
# How long a cancel waits before it reads the entry again: longer than a worker takes to write
# `running` (held 50 ms, released on a 50 ms tick) or a final state (gathered for 5 ms) for an
# attempt it began before it saw the cancel marker.
CANCEL_SETTLE_SECONDS = 0.25
LIST_SCAN_LIMIT = 100_000  # entries `list` looks at before it stops


class LedgerUnavailable(FerryError):
    """The ledger's bucket could not be read or written."""


class CancelAnswer(enum.Enum):
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"
    TOO_LATE = "too_late"  # running or finished


async def open_bucket(
    js: JetStreamContext, settings: CallLedgerSettings, replicas: int
) -> KeyValue:
    """The ledger's bucket, created with `replicas` if missing (StartupError if it cannot be)."""
    return await ensure_key_value(
        js,
        settings.call_ledger_bucket,
        ttl=settings.call_ledger_ttl,
        history=1,
        replicas=replicas,
    )


def bucket_handle(js: JetStreamContext, bucket: str) -> KeyValue:
    """A handle on the bucket without asking NATS, for a process that must run without it:
    its writes fail (and are counted) until the bucket exists."""
    return KeyValue(name=bucket, stream=f"KV_{bucket}", pre=f"$KV.{bucket}.", js=js, direct=False)


async def open_or_handle(
    js: JetStreamContext, settings: CallLedgerSettings, replicas: int, *, who: str
) -> KeyValue:
    try:
        return await open_bucket(js, settings, replicas)
    except StartupError as exc:
        log.warning("%s: call ledger unavailable, calls run without it: %s", who, exc)
        return bucket_handle(js, settings.call_ledger_bucket)


def base_entry(request: QueueRequest, state: CallState, attempt: int, now: float) -> CallEntry:
    """An entry with what the message itself says, in `state` as of `now`."""
    _, namespace = split_function(request.function)
    return CallEntry(
        call_id=request.call_id,
        function=request.function,
        namespace=namespace,
        queue=request.queue_name,
        state=state,
        attempts=attempt,
        queued_at=start_time_text(request.start_time),
        updated_at=rfc3339(now),
        callback_url=public_url(request.callback) if request.callback else None,
    )


def queued_entry(request: QueueRequest) -> CallEntry:
    """The entry of a call just handed to JetStream, before any worker saw it."""
    return base_entry(request, CallState.QUEUED, 0, time.time())


def queued_value(request: QueueRequest) -> bytes:
    """`queued_entry(request).encode()` in a fraction of the time: the front door writes one
    for every call it accepts, and only four of the fields vary from call to call."""
    callback = request.callback
    function, namespace, queue = function_texts(request.function, request.queue_name)
    return _QUEUED.format(
        json_text(request.call_id),
        function,
        namespace,
        queue,
        json_text(start_time_text(request.start_time)),
        rfc3339(time.time()),
        json_text(public_url(callback)) if callback else "null",
    ).encode()


_QUEUED = entry_template(
    {
        "state": '"queued"',
        "attempts": "0",
        "status": "null",
        "started_at": "null",
        "finished_at": "null",
        "next_attempt_at": "null",
        "updated_at": '"{}"',
        "callback_outcome": "null",
        "error": "null",
        "result_stored": "false",
        "result_bytes": "null",
    },
    result=False,
)


async def record_queued(
    kv: KeyValue,
    request: QueueRequest,
    publish: Coroutine[Any, Any, T],
    value: bytes | None = None,
) -> T:
    """Run `publish` with the `queued` entry (or `value`) created beside it (for one-shot
    commands, which have no background writer). A ledger that cannot be written is logged,
    never raised."""
    entry = queued_value(request) if value is None else value
    create = asyncio.ensure_future(
        kv.create(entry_key(request.call_id), entry, validate_keys=False)
    )
    try:
        return await publish
    finally:
        try:
            await create
        except KeyWrongLastSequenceError:
            pass  # a worker wrote first
        except (NatsError, TimeoutError) as exc:
            log.warning("call ledger: could not record the call as queued: %s", describe(exc))


class LedgerStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, call_id: str) -> CallEntry | None:
        """The entry of `call_id`, or None if there is none (never written, or expired)."""
        found = await self._get(call_id)
        return found[0] if found else None

    async def _get(self, call_id: str) -> tuple[CallEntry, int] | None:
        try:
            raw = await self.kv.get(entry_key(call_id), validate_keys=False)
        except KeyNotFoundError:
            return None
        except (NatsError, TimeoutError) as exc:
            raise LedgerUnavailable(f"call ledger unavailable: {describe(exc)}") from None
        try:
            entry = CallEntry.decode(raw.value or b"")
        except ValueError:
            return None
        if entry.call_id != call_id:  # a hash token shared by two ids: not this call
            return None
        return entry, raw.revision or 0

    async def cancel(
        self, call_id: str, settle: float = CANCEL_SETTLE_SECONDS
    ) -> tuple[CancelAnswer, CallEntry | None]:
        """Move a `queued` or `retrying` entry to `cancelled` (compare-and-set), then leave the
        marker the workers watch. Running or finished calls are left alone.

        A worker may have begun an attempt just before the marker reached it, with its
        `running` not written yet: after `settle` seconds the entry is read again, and if a
        worker's write replaced `cancelled` the answer is TOO_LATE with what it wrote."""
        for _ in range(CANCEL_TRIES):
            found = await self._get(call_id)
            if found is None:
                return CancelAnswer.UNKNOWN, None
            entry, revision = found
            if not entry.state.cancellable:
                return CancelAnswer.TOO_LATE, entry
            entry.state = CallState.CANCELLED
            entry.finished_at = entry.updated_at = now_text()
            entry.next_attempt_at = None
            try:
                await self.kv.update(entry_key(call_id), entry.encode(), last=revision)
                await self.kv.put(cancel_key(call_id), call_id.encode(), validate_keys=False)
            except KeyWrongLastSequenceError:
                continue  # a worker wrote meanwhile: look again
            except (NatsError, TimeoutError) as exc:
                raise LedgerUnavailable(f"call ledger unavailable: {describe(exc)}") from None
            return await self._settled(call_id, entry, settle)
        return CancelAnswer.TOO_LATE, await self.get(call_id)

    async def _settled(
        self, call_id: str, cancelled: CallEntry, settle: float
    ) -> tuple[CancelAnswer, CallEntry | None]:
        await asyncio.sleep(settle)
        after = await self.get(call_id)
        if after is not None and after.state is not CallState.CANCELLED:
            return CancelAnswer.TOO_LATE, after  # a worker had begun it: it runs on
        return CancelAnswer.CANCELLED, after or cancelled

    async def list(
        self,
        *,
        function: str = "",
        state: str = "",
        limit: int = 50,
        scan_limit: int = LIST_SCAN_LIMIT,
    ) -> list[CallEntry]:
        """The `limit` most recently changed entries that match, newest first."""
        wanted = _matcher(function, state)
        kept: deque[CallEntry] = deque(maxlen=max(1, limit))
        try:
            watcher = await self.kv.watch(ENTRY_PREFIX + ">", ignore_deletes=True)
            try:
                for _ in range(scan_limit):
                    update = await watcher.updates(timeout=5.0)  # type: ignore[no-untyped-call]
                    if update is None:
                        break
                    try:
                        entry = CallEntry.decode(update.value or b"")
                    except ValueError:
                        continue
                    if wanted(entry):
                        entry.result = None  # keep memory to the entries, not their bodies
                        kept.append(entry)
                    if not update.delta:
                        break
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]
        except (NatsError, TimeoutError) as exc:
            raise LedgerUnavailable(f"call ledger unavailable: {describe(exc)}") from None
        return list(reversed(kept))


def _matcher(function: str, state: str) -> Callable[[CallEntry], bool]:
    def matches(entry: CallEntry) -> bool:
        if state and entry.state.value != state:
            return False
        return not function or function in (entry.function, entry.function.partition(".")[0])

    return matches

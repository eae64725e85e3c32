"""Reading, listing and cancelling ledger entries: what the gateway's call routes, the console
and `ferry calls` use.

nats-py exceptions stop here: callers see `LedgerUnavailable`, or a plain answer.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import TypeVar

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import (
    APIError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from connectors.jetstream.connect import describe
from ledger.bucket import LedgerUnavailable
from ledger.entries import (
    ENTRY_PREFIX,
    CallEntry,
    CallState,
    cancel_key,
    entry_key,
    now_text,
)
from ledger.fence import markers_seen
from ledger.sheets import SHEET_PREFIX, QueuedOnSheets, sheet_entry, sheet_key
from ledger.state_sheets import (
    STATE_PREFIX,
    STATE_SHEETS_READ,
    Standing,
    newer,
    state_entries,
    state_subjects,
)

log = logging.getLogger("ferry.ledger")
T = TypeVar("T")

CANCEL_TRIES = 5  # compare-and-set retries when a worker writes between our read and write
# How long a cancel waits, once every worker has been handed its marker, before it reads the
# entry again: longer than a worker takes to write `running` (sent at once when a marker names
# a call it is running) for an attempt it began before it saw the marker.
CANCEL_SETTLE_SECONDS = 0.25
LIST_SCAN_LIMIT = 100_000  # entries `list` looks at before it stops
SHEET_RECORDS_READ = 20_000  # calls known only from sheets that `list` keeps while it reads
STREAM_NOT_FOUND = 10059  # JetStream's code for a stream (here: the bucket) that is not there


UNCONFIRMED = (
    "the cancel is recorded, but not every worker has been handed it yet, so the call may still"
    " run; GET it to see"
)


MARKER_GRACE_SECONDS = 1.0  # how long a listing waits for values after nats-py says "no more"


class CancelAnswer(enum.Enum):
    CANCELLED = "cancelled"
    PENDING = "pending"  # cancelled before the ledger had seen the call
    TOO_LATE = "too_late"  # running or finished
    UNCONFIRMED = "unconfirmed"  # recorded, but a worker has not been handed the marker


class LedgerStore:
    def __init__(self, kv: KeyValue, js: JetStreamContext, bucket: str) -> None:
        self.kv = kv
        self.js = js
        self.bucket = bucket
        self._stream = f"KV_{bucket}"

    async def get(self, call_id: str) -> CallEntry | None:
        """The entry of `call_id`, or None if there is none (never written, or expired)."""
        found = await self._get(call_id)
        return found[0] if found else None

    async def _get(self, call_id: str) -> tuple[CallEntry, int] | None:
        """The entry and its revision; a call known only from its sheet has revision 0 (its
        own entry is then made with `create`)."""
        raw = await self._value(entry_key(call_id))
        own: tuple[CallEntry, int] | None = None
        if raw is not None:
            try:
                entry = CallEntry.decode(raw[0])
            except ValueError:
                entry = None
            if entry is not None and entry.call_id == call_id:  # else a hash token's other id
                own = entry, raw[1]
        sheet = await self._on_state_sheets(call_id)  # a worker's entry on a state sheet
        if sheet is not None:
            mine = (own[1], own[0].state, False) if own is not None else None
            if mine is None or newer((sheet[1], sheet[0].state, True), mine):
                return sheet[0], own[1] if own is not None else 0
        if own is not None or raw is not None:
            return own
        queued_on = sheet_key(call_id)
        value = await self._value(queued_on) if queued_on is not None else None
        if value is None:
            return None
        queued = sheet_entry(value[0], call_id)
        return (queued, 0) if queued is not None else None

    async def _on_state_sheets(self, call_id: str) -> tuple[CallEntry, int] | None:
        """The newest entry of `call_id` on a state sheet, and its stream sequence."""
        subjects = state_subjects(self.bucket, call_id)
        if subjects is None:
            return None
        found: tuple[CallEntry, int] | None = None
        wanted = call_id.encode()  # a sheet id is plain text: JSON writes it as it is
        seq = 1
        for _ in range(STATE_SHEETS_READ):
            try:
                msg = await self.js.get_msg(self._stream, seq=seq, subject=subjects, next=True)
            except NotFoundError:
                break
            except (NatsError, TimeoutError) as exc:
                raise LedgerUnavailable(f"call ledger unavailable: {describe(exc)}") from None
            number = msg.seq or seq
            seq = number + 1
            if wanted not in (msg.data or b""):  # the sheet's other calls: not decoded
                continue
            try:
                entries = state_entries(msg.data or b"")
            except ValueError:
                continue
            for entry in entries:
                if entry.call_id == call_id:
                    found = entry, number
        return found

    async def _value(self, key: str) -> tuple[bytes, int] | None:
        try:
            raw = await self.kv.get(key, validate_keys=False)
        except KeyNotFoundError as exc:
            if _bucket_gone(exc):  # not "unknown": the ledger cannot say
                raise LedgerUnavailable("call ledger unavailable: its bucket is gone") from None
            return None
        except (NatsError, TimeoutError) as exc:
            raise LedgerUnavailable(f"call ledger unavailable: {describe(exc)}") from None
        return raw.value or b"", raw.revision or 0

    async def cancel(
        self, call_id: str, settle: float = CANCEL_SETTLE_SECONDS
    ) -> tuple[CancelAnswer, CallEntry]:
        """Cancel a call that has not begun, answering CANCELLED or PENDING only when no
        attempt will run.

        A `queued` or `retrying` entry becomes `cancelled` by compare-and-set on its revision;
        an id the ledger has not seen yet (its `queued` entry is still on its way, or it was
        queued without one) gets a `cancelled` entry made with `create`, so a `queued` arriving
        later cannot replace it (PENDING). Then the marker the workers watch is written, and
        the cancel waits until every worker's watch has been handed it (UNCONFIRMED if one
        has not in time). A worker that had begun an attempt before writes `running` as soon
        as the marker reaches it: after `settle` seconds the entry is read again, and if a
        worker's write replaced `cancelled` the answer is TOO_LATE with what it wrote."""
        for _ in range(CANCEL_TRIES):
            found = await self._get(call_id)
            if found is not None and not found[0].state.cancellable:
                return CancelAnswer.TOO_LATE, found[0]
            entry = found[0] if found else CallEntry(call_id, "", CallState.CANCELLED)
            entry.state = CallState.CANCELLED
            entry.finished_at = entry.updated_at = now_text()
            entry.next_attempt_at = None
            try:
                if found is None or not found[1]:  # unseen, or only on a sheet
                    await self.kv.create(entry_key(call_id), entry.encode(), validate_keys=False)
                else:
                    await self.kv.update(entry_key(call_id), entry.encode(), last=found[1])
                marker = await self.kv.put(
                    cancel_key(call_id), call_id.encode(), validate_keys=False
                )
            except KeyWrongLastSequenceError:
                continue  # a worker (or the front door) wrote meanwhile: look again
            except (NatsError, TimeoutError) as exc:
                raise LedgerUnavailable(f"call ledger unavailable: {describe(exc)}") from None
            if not await markers_seen(self.js, self.bucket, marker):
                return CancelAnswer.UNCONFIRMED, entry
            answer = CancelAnswer.CANCELLED if found else CancelAnswer.PENDING
            return await self._settled(call_id, entry, answer, settle)
        latest = await self._get(call_id)
        if latest is None:
            raise LedgerUnavailable(f"call ledger: call {call_id} changes too often to cancel")
        return CancelAnswer.TOO_LATE, latest[0]

    async def _settled(
        self, call_id: str, cancelled: CallEntry, answer: CancelAnswer, settle: float
    ) -> tuple[CancelAnswer, CallEntry]:
        await asyncio.sleep(settle)
        after = await self.get(call_id)
        if after is not None and after.state is not CallState.CANCELLED:
            return CancelAnswer.TOO_LATE, after  # a worker had begun it: it runs on
        return answer, after or cancelled

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
        # each call's standing record (its own entry or one on a state sheet), newest kept
        kept = Standing(2 * max(1, limit) + 16, wanted)  # room for records superseded
        # calls known only from their front door's sheet (`ledger.sheets`)
        on_sheets = QueuedOnSheets(max(limit, SHEET_RECORDS_READ))
        try:
            # every key (entries, sheets, cancel markers), deletes included: every stored
            # message then yields an update, and the last of them says so (delta 0), which is
            # where the scan ends
            watcher = await self.kv.watch(">")
            try:
                marker_seen = False
                for position in range(scan_limit):
                    try:
                        update = await watcher.updates(  # type: ignore[no-untyped-call]
                            timeout=MARKER_GRACE_SECONDS if marker_seen else 5.0
                        )
                    except TimeoutError:
                        if marker_seen:
                            break  # the marker was right: there was nothing to read
                        raise
                    if update is None:
                        # nats-py's "no more values" marker. It can come before the values it
                        # announces the end of (a race in its watch when the server has sent
                        # them all before it asks how many are left), so it is not the end
                        # unless nothing follows it.
                        marker_seen = True
                        continue
                    if update.operation is None:
                        value = update.value or b""
                        listed = listed_entries(update.key, value, position, on_sheets)
                        for found, on_sheet in listed:
                            found.result = None  # keep memory to the entries, not their bodies
                            kept.add(position, found, on_sheet)
                    if not update.delta:
                        break
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]
        except (NatsError, TimeoutError) as exc:
            raise LedgerUnavailable(f"call ledger unavailable: {describe(exc)}") from None
        queued = [(n, e) for n, e in on_sheets.standing() if wanted(e)]
        newest = sorted([*kept.records(), *queued], key=lambda found: found[0])[-max(1, limit) :]
        return [entry for _, entry in reversed(newest)]


def listed_entries(
    key: str, value: bytes, position: int, on_sheets: QueuedOnSheets
) -> list[tuple[CallEntry, bool]]:
    """The call entries a listed key holds, each with whether it is on a state sheet (none for
    a sheet, a cancel marker or a bad value). Sheets and entries are told to `on_sheets`,
    where an entry replaces its call's record."""
    if key.startswith(SHEET_PREFIX):
        on_sheets.sheet_seen(position, value)
        return []
    if key.startswith(STATE_PREFIX):
        try:
            entries = [(entry, True) for entry in state_entries(value)]
        except ValueError:
            return []
    elif key.startswith(ENTRY_PREFIX):
        try:
            entries = [(CallEntry.decode(value), False)]
        except ValueError:
            return []
    else:
        return []
    for entry, _ in entries:
        on_sheets.entry_seen(entry.call_id)
    return entries


def _bucket_gone(exc: KeyNotFoundError) -> bool:
    """nats-py reports a get from a bucket whose stream is gone as a missing key; the
    stream's own error is the one it was raised from."""
    cause = exc.__context__
    return isinstance(cause, APIError) and cause.err_code == STREAM_NOT_FOUND


def _matcher(function: str, state: str) -> Callable[[CallEntry], bool]:
    def matches(entry: CallEntry) -> bool:
        if state and entry.state.value != state:
            return False
        return not function or function in (entry.function, entry.function.partition(".")[0])

    return matches

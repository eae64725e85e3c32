"""Sheets: the `queued` records of many calls in one ledger write.

A front door that wrote one `queued` entry per call it accepted cost JetStream a stored message
per call beside the call itself. Instead, the call ids the front door makes itself share their
first 18 characters with the other calls of one sheet (`xxxxxxxx-xxxx-4xxx`, 60 random bits,
the rest of the id 62 more: still a version 4 UUID in its usual text form), and once every call
of the sheet is stored, one value under `sheet.<those 18 characters>` holds all their records.
A reader that finds no entry under `call.<id>` looks at the sheet the id names; an entry a
worker (or a cancel) wrote always wins over a sheet's record, whichever landed first.

Only calls whose id the front door made go on sheets; a call id the caller chose, and a delayed
call's `scheduled`, are written per call as before.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

from ledger.entries import (
    MAX_ENTRY_BYTES,
    CallEntry,
    CallState,
    split_function,
    start_time_text,
)

SHEET_PREFIX = "sheet."
SHEET_CALLS = 64  # calls on one sheet at most
PREFIX_CHARS = 18  # what the ids of one sheet share: `xxxxxxxx-xxxx-4xxx`
_SHEET_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
# a record: call id, function, queue, X-Start-Time (Unix nanoseconds, as the call holds it),
# callback_url (as the ledger shows it: without secrets), trace_id
Record = tuple[str, str, str, str | None, str | None, str | None]


def new_sheet() -> str:
    """A new sheet's id prefix: 60 random bits with the UUID's version digit."""
    text = os.urandom(8).hex()
    return f"{text[:8]}-{text[8:12]}-4{text[12:15]}"


def call_id_on(sheet: str, random: bytes | None = None) -> str:
    """A new call id on `sheet`: its prefix, the RFC 4122 variant and 62 more random bits
    (from `random`, 8 bytes from `os.urandom`, when the caller drew them ahead)."""
    raw = bytearray(os.urandom(8) if random is None else random)
    raw[0] = (raw[0] & 0x3F) | 0x80
    text = raw.hex()
    return f"{sheet}-{text[:4]}-{text[4:16]}"


def sheet_key(call_id: str) -> str | None:
    """The key of the sheet an id could be on (a lowercase version 4 UUID), else None."""
    if len(call_id) == 36 and _SHEET_ID.fullmatch(call_id):
        return SHEET_PREFIX + call_id[:PREFIX_CHARS]
    return None


class Sheet:
    """The records of one sheet's calls that were stored, encoded once, when it is sent."""

    __slots__ = ("records", "updated_at")

    def __init__(self, records: list[Record], updated_at: str) -> None:
        self.records = records
        self.updated_at = updated_at

    def encode(self) -> bytes:
        return json.dumps(
            {"updated_at": self.updated_at, "calls": self.records},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()


def sheet_entries(raw: bytes) -> Iterator[CallEntry]:
    """Every call on a stored sheet as its `queued` entry; ValueError if it is not a sheet."""
    if len(raw) > MAX_ENTRY_BYTES:
        raise ValueError("sheet too large")
    try:
        data = json.loads(raw)
        updated_at = data["updated_at"]
        rows = data["calls"]
        if not isinstance(updated_at, str) or not isinstance(rows, list):
            raise TypeError("not a sheet")
    except (KeyError, TypeError, RecursionError, ValueError) as exc:
        raise ValueError(f"not a sheet: {exc}") from None
    for row in rows:
        entry = _entry(row, updated_at)
        if entry is not None:
            yield entry


def sheet_entry(raw: bytes, call_id: str) -> CallEntry | None:
    """The `queued` entry of `call_id` on a stored sheet, or None if it is not on it."""
    try:
        return next((e for e in sheet_entries(raw) if e.call_id == call_id), None)
    except ValueError:
        return None


def _entry(row: Any, updated_at: str) -> CallEntry | None:
    """A record as an entry; None if it is not a well-formed record (anyone with access can
    write the bucket)."""
    if not isinstance(row, list) or len(row) != 6:
        return None
    call_id, function, queue, queued_at, callback_url, trace_id = row
    if not all(isinstance(v, str) for v in (call_id, function, queue)):
        return None
    if not all(v is None or isinstance(v, str) for v in (queued_at, callback_url, trace_id)):
        return None
    return CallEntry(
        call_id=call_id,
        function=function,
        state=CallState.QUEUED,
        namespace=split_function(function)[1],
        queue=queue,
        queued_at=start_time_text(queued_at) if queued_at else None,
        updated_at=updated_at,
        callback_url=callback_url,
        trace_id=trace_id,
    )


class QueuedOnSheets:
    """While reading the bucket in order, the calls whose sheet record still stands: an entry
    of the call's own, before or after its sheet, replaces the record. Holds at most `cap`
    records (the oldest go first), so reading a bucket with a huge backlog of queued calls
    stays bounded."""

    def __init__(self, cap: int) -> None:
        self.cap = max(1, cap)
        self._written: set[str] = set()  # ids with an entry of their own
        self._records: dict[str, tuple[int, CallEntry]] = {}  # id -> (position, entry)

    def entry_seen(self, call_id: str) -> None:
        self._written.add(call_id)
        self._records.pop(call_id, None)

    def sheet_seen(self, position: int, raw: bytes) -> None:
        """A sheet read at `position` (one that is not a sheet is passed over)."""
        try:
            entries = list(sheet_entries(raw))
        except ValueError:
            return
        records = self._records
        for entry in entries:
            if entry.call_id not in self._written:
                records.pop(entry.call_id, None)  # the same id on two sheets: the later one
                records[entry.call_id] = (position, entry)
        while len(records) > self.cap:
            del records[next(iter(records))]

    def standing(self) -> list[tuple[int, CallEntry]]:
        """(position, entry) of each record no entry replaced, oldest first."""
        return list(self._records.values())

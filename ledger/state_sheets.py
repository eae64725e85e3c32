"""State sheets: the entries a worker writes for many calls, in one ledger write.

A worker that wrote one entry per state change cost JetStream a stored message per change (its
CPU per message, not per byte, is most of what the ledger costs nats-server). The calls the
front door accepts together share a sheet prefix (`ledger.sheets`), and a worker mostly runs and
finishes them together too: the entries (`running`, `retrying`, final states) of two or more
calls with one prefix that leave in one batch go out as one value under
`states.<prefix>.<writer>-<batch>-<part>` (a JSON array of entries, each as `CallEntry.encode`
writes it). A call alone in its batch, a call id that is not on a sheet, and a `running` the
worker writes because a cancel marker names the call are written under `call.<token>` as before.

Readers find a call's state sheets from its id (every key under `states.<prefix>.`) and take
its newest record there or under `call.<token>`, with one exception: a worker's final record
beats a `cancelled` entry the cancel wrote, whichever is newer (the call ran; see `newer`).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable

from ledger.entries import MAX_ENTRY_BYTES, CallEntry, CallState
from ledger.sheets import PREFIX_CHARS, sheet_key

STATE_PREFIX = "states."
STATE_SHEET_MAX_BYTES = 256 * 1024  # one state sheet's value at most (a batch is split to fit)
STATE_SHEETS_READ = 64  # state sheets a reader looks at for one call at most


def sheet_group(call_id: str) -> str | None:
    """The sheet prefix a call's entries may be gathered under, or None (written alone)."""
    return call_id[:PREFIX_CHARS] if sheet_key(call_id) is not None else None


def state_subjects(bucket: str, call_id: str) -> str | None:
    """The subjects holding the state sheets `call_id` may be on (a wildcard), or None."""
    group = sheet_group(call_id)
    return None if group is None else f"$KV.{bucket}.{STATE_PREFIX}{group}.>"


def sheet_runs(entries: list[tuple[str, bytes]], limit: int) -> Iterable[list[tuple[str, bytes]]]:
    """`entries` (key, encoded entry) cut into runs whose state sheet stays within `limit`
    bytes, in order."""
    run: list[tuple[str, bytes]] = []
    size = 2
    for entry in entries:
        length = len(entry[1]) + 1
        if run and size + length > limit:
            yield run
            run, size = [], 2
        run.append(entry)
        size += length
    if run:
        yield run


def encode_state_sheet(values: list[bytes]) -> bytes:
    """A state sheet from its calls' encoded entries."""
    return b"[" + b",".join(values) + b"]"


def state_entries(raw: bytes) -> list[CallEntry]:
    """The entries on a stored state sheet (ill-formed ones skipped: anyone with access can
    write the bucket); ValueError if it is not a state sheet."""
    if len(raw) > MAX_ENTRY_BYTES:
        raise ValueError("state sheet too large")
    try:
        rows = json.loads(raw)
    except (RecursionError, ValueError) as exc:
        raise ValueError(f"not a state sheet: {exc}") from None
    if not isinstance(rows, list):
        raise ValueError("not a state sheet")
    entries = []
    for row in rows:
        if isinstance(row, dict):
            try:
                entries.append(CallEntry.from_data(row))
            except ValueError:
                continue
    return entries


Record = tuple[int, CallState, bool]  # where it was read, the state it says, on a state sheet?


def newer(a: Record, b: Record) -> bool:
    """Whether record `a` stands over `b` for one call: the newer, except that a worker's
    final record on a state sheet stands over a cancel's `cancelled` under the call's own key
    (the cancel read the call as not begun, but a worker had already finished it)."""
    if a[2] != b[2]:
        sheet, own = (a, b) if a[2] else (b, a)
        if own[1] is CallState.CANCELLED and sheet[1].final and sheet[1] is not own[1]:
            return sheet is a
    return a[0] > b[0]


class Standing:
    """Reading the bucket in order, the record that stands for each call: every call's
    newest (`newer`) is remembered in brief (bounded by what is read), and of the records
    `wanted` takes, the last `cap` are kept whole; `records` gives those still standing."""

    def __init__(self, cap: int, wanted: Callable[[CallEntry], bool] | None = None) -> None:
        self.wanted = wanted
        self._best: dict[str, Record] = {}
        self._kept: deque[tuple[Record, CallEntry]] = deque(maxlen=max(1, cap))

    def add(self, position: int, entry: CallEntry, on_sheet: bool) -> None:
        record = (position, entry.state, on_sheet)
        best = self._best.get(entry.call_id)
        if best is None or newer(record, best):
            self._best[entry.call_id] = record
        if self.wanted is None or self.wanted(entry):
            self._kept.append((record, entry))

    def records(self) -> list[tuple[int, CallEntry]]:
        """(position, entry) of each kept record that stands for its call, oldest first."""
        best = self._best
        return [(r[0], e) for r, e in self._kept if best.get(e.call_id) == r]

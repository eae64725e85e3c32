"""The front door's part of the call ledger: the `queued` record of each call it accepts.

The calls whose id the front door makes go on sheets (`ledger.sheets`): each id is made on the
sheet being filled, and once every call made on it is stored (or refused), one write holds
their records. A sheet takes new ids for `SHEET_GATHER_SECONDS` and `SHEET_CALLS` calls at
most, and goes as soon as every call made on it so far has its outcome: calls that come one
at a time are each written at once, while under load the calls accepted together share one
write. A call id the caller chose gets its own `queued` entry, written with `create` beside
the JetStream publish as before and removed again if the publish failed; a delayed call gets
its `scheduled` entry so. Nothing is awaited: accepting a call waits on nothing more than the
publish.
"""

from __future__ import annotations

import asyncio
import os

from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from asyncq.codec import QueueRequest
from ledger.delayed import scheduled_value
from ledger.entries import CallState, entry_key, now_text, public_url
from ledger.queued import queued_value, trace_id_of
from ledger.sheets import (
    PREFIX_CHARS,
    SHEET_CALLS,
    SHEET_PREFIX,
    Record,
    Sheet,
    call_id_on,
    new_sheet,
)
from ledger.writer import DEFAULT_LIMIT, Change, LedgerMetrics, LedgerWriter, Op

SHEET_GATHER_SECONDS = 0.005  # how long a sheet takes new call ids at most
# a call whose callback URL, function and queue names are longer than this together gets an entry
# of its own, so that a sheet is at most about SHEET_CALLS * RECORD_CHARS (and its ids, times
# and JSON) long, far below NATS's max_payload
RECORD_CHARS = 1024
# a sheet counts as one change in the writer; this bounds the records waiting to 65,536
WRITER_LIMIT = DEFAULT_LIMIT // 8


class _Filling:
    """A sheet whose calls are not all stored yet."""

    __slots__ = ("closed", "pending", "records")

    def __init__(self) -> None:
        self.pending: set[str] = set()  # ids made on it whose publish has no outcome yet
        self.records: list[Record] = []
        self.closed = False  # takes no more ids


class QueuedCalls:
    def __init__(
        self, nc: Client, bucket: str, registry: CollectorRegistry, *, publish_timeout: float = 5.0
    ) -> None:
        self.metrics = LedgerMetrics(registry, "gateway", [CallState.QUEUED, CallState.SCHEDULED])
        self.writer = LedgerWriter(
            nc,
            bucket,
            on_failure=self.metrics.write_failures.inc,
            on_drop=self.metrics.dropped.inc,
            limit=WRITER_LIMIT,
        )
        # a sheet whose calls still have no outcome this long after it closed is sent as it is
        self.late_after = publish_timeout + 1.0
        self._sheets: dict[str, _Filling] = {}
        self._filling: str | None = None  # the sheet new ids are made on
        self._made = 0  # ids made on it
        self._random = b""  # random bytes drawn for them
        self._late: set[str] = set()  # ids whose sheet was sent before their outcome

    async def start(self) -> None:
        await self.writer.start()

    async def close(self) -> None:
        for sheet in list(self._sheets):
            self._send(sheet)
        await self.writer.close()

    # -- call ids ---------------------------------------------------------------------------

    def new_call_id(self) -> str:
        """An id for a call the front door accepts, on the sheet being filled."""
        sheet = self._filling
        if sheet is None:
            sheet = self._filling = new_sheet()
            self._sheets[sheet] = _Filling()
            self._made = 0
            self._random = os.urandom(8 * SHEET_CALLS)  # one system call for the sheet's ids
            asyncio.get_running_loop().call_later(SHEET_GATHER_SECONDS, self._close, sheet)
        made = self._made
        call_id = call_id_on(sheet, self._random[8 * made : 8 * made + 8])
        self._sheets[sheet].pending.add(call_id)
        self._made = made = made + 1
        if made >= SHEET_CALLS:
            self._close(sheet)
        return call_id

    def _close(self, sheet: str) -> None:
        if self._filling == sheet:
            self._filling = None
        filling = self._sheets.get(sheet)
        if filling is None or filling.closed:
            return
        filling.closed = True
        if filling.pending:
            asyncio.get_running_loop().call_later(self.late_after, self._send, sheet)
        else:
            self._send(sheet)

    # -- a call's outcome -------------------------------------------------------------------

    def queued(self, request: QueueRequest, due: float | None = None) -> None:
        """Before the publish: `scheduled` with its due time for a delayed call, `queued` for
        one whose id the caller chose; a call on a sheet waits for its outcome."""
        call_id = request.call_id
        if not call_id:
            return
        if due is None:
            filling = self._sheets.get(call_id[:PREFIX_CHARS])
            if filling is not None and call_id in filling.pending:
                return  # its record goes on the sheet once it is stored
            self.metrics.states.inc(CallState.QUEUED)
            entry = queued_value(request)
        else:
            self.metrics.states.inc(CallState.SCHEDULED)
            entry = scheduled_value(request, due)
        self._forget(call_id)  # delayed: written per call even if its id was made on a sheet
        self.writer.submit(entry_key(call_id), Change(Op.CREATE, entry))

    def stored(self, request: QueueRequest) -> None:
        """JetStream stored the call: on its sheet, its record."""
        call_id = request.call_id
        filling = self._sheets.get(call_id[:PREFIX_CHARS])
        if filling is not None and call_id in filling.pending:
            filling.pending.discard(call_id)
            callback = request.callback_url  # the front door sets it whenever there is one
            if len(callback) + len(request.function) + len(request.queue_name) <= RECORD_CHARS:
                filling.records.append(_record(request, callback, call_id))
            else:  # a long callback URL: its own entry, so a sheet stays far below max_payload
                self.writer.submit(entry_key(call_id), Change(Op.CREATE, queued_value(request)))
            if not filling.pending:
                self._send(call_id[:PREFIX_CHARS])
        elif call_id in self._late:
            self._late.discard(call_id)
            self.writer.submit(entry_key(call_id), Change(Op.CREATE, queued_value(request)))

    def not_queued(self, request: QueueRequest) -> None:
        """The publish failed (the 503 says so): no record, and an entry written is removed."""
        call_id = request.call_id
        if not call_id:
            return
        filling = self._on_sheet(call_id)
        if filling is not None:
            filling.pending.discard(call_id)
            self._maybe_send(call_id, filling)
        elif call_id in self._late:
            self._late.discard(call_id)
        else:
            self.writer.submit(entry_key(call_id), Change(Op.DELETE))

    def not_sent(self, request: QueueRequest) -> None:
        """The call was never published (NATS not connected): nothing to record."""
        self._forget(request.call_id)

    # -- sheets -----------------------------------------------------------------------------

    def _on_sheet(self, call_id: str) -> _Filling | None:
        filling = self._sheets.get(call_id[:PREFIX_CHARS])
        return filling if filling is not None and call_id in filling.pending else None

    def _forget(self, call_id: str) -> None:
        filling = self._on_sheet(call_id)
        if filling is not None:
            filling.pending.discard(call_id)
            self._maybe_send(call_id, filling)
        self._late.discard(call_id)

    def _maybe_send(self, call_id: str, filling: _Filling) -> None:
        """Every call made on the sheet so far has its outcome: it goes now, full or not (when
        calls come one at a time, each record is written as soon as its call is stored)."""
        if not filling.pending:
            self._send(call_id[:PREFIX_CHARS])

    def _send(self, sheet: str) -> None:
        filling = self._sheets.pop(sheet, None)
        if filling is None:
            return
        if self._filling == sheet:
            self._filling = None
        # calls still without an outcome (sent late): each gets its own entry if stored after all
        if len(self._late) + len(filling.pending) > DEFAULT_LIMIT:
            self._late.clear()  # only a call whose publish never ended stays here: bounded
        self._late.update(filling.pending)
        if filling.records:
            self.metrics.states.add(len(filling.records), CallState.QUEUED)
            value = Sheet(filling.records, now_text())
            self.writer.submit(SHEET_PREFIX + sheet, Change(Op.CREATE, value))


def _record(request: QueueRequest, callback: str, call_id: str) -> Record:
    return (
        call_id,
        request.function,
        request.queue_name,
        request.start_time or None,
        public_url(callback) if callback else None,
        trace_id_of(request),
    )

"""What the console reads from NATS, each read bounded: the last hour of the call ledger, the
newest dead letters, the queue's consumers, cron claims. nats-py errors stop here as
`ConsoleUnavailable`, which a page shows as one line instead of failing."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from asyncq.backlog import BacklogUnavailable, QueueBacklog, read_backlog
from asyncq.dead_letter_store import DeadLetter, DeadLetterStore
from asyncq.function_state import DEFAULT_BUCKET as STATE_BUCKET
from asyncq.function_state import WAITING_STATES, FunctionStates, why_waiting_in
from asyncq.header_text import decode_headers
from asyncq.jetstream import stream_holding
from asyncq.schedule import unschedule as asyncq_unschedule
from asyncq.settings import DEFAULT_BUCKET
from connectors.core.errors import FerryError, StartupError
from connectors.core.function_entries import FunctionInfo
from connectors.jetstream.connect import describe
from console.activity import HOUR, Activity, summarise
from ledger.bucket import LedgerUnavailable
from ledger.delayed import cancel_call
from ledger.entries import CallEntry
from ledger.sheets import QueuedOnSheets
from ledger.state_sheets import Standing
from ledger.store import CancelAnswer, LedgerStore, listed_entries

MAX_SCAN_ENTRIES = 20_000  # ledger entries read for the overview, at most
MAX_SCAN_BYTES = 64 * 1024 * 1024  # and at most this many bytes of them
MAX_LETTERS = 1_000  # newest dead letters listed
MAX_CONSUMERS = 200
CACHE_SECONDS = 5.0  # pages poll every few seconds; several viewers share one read

Functions = Callable[[], Awaitable[Sequence[FunctionInfo]]]


class ConsoleUnavailable(FerryError):
    """NATS (or the part of it a page needs) could not be read."""


@dataclass(frozen=True)
class QueueConsumer:
    name: str
    subject: str
    pending: int
    in_flight: int
    waiting_pulls: int


@dataclass(frozen=True)
class Overview:
    activity: Activity
    consumers: list[QueueConsumer]
    stored: int  # messages in the request stream: waiting, in flight or between retries
    partial: bool  # the hour held more entries than the console reads
    ledger_problem: str = ""  # why the ledger's part is missing, if it is
    backlog: QueueBacklog | None = None  # per function (fair mode), None if unreadable


class ConsoleData:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        dead_letter_stream: str,
        ledger: KeyValue | None,
        ledger_bucket: str,
        functions: Functions,
        claims_bucket: str = "ferry-cron",
        body_bucket: str = DEFAULT_BUCKET,
        function_state_bucket: str = STATE_BUCKET,
        replicas: int = 1,
        delayed_stream: str = "",
    ) -> None:
        self.js = js
        self.delayed_stream = delayed_stream  # where delayed calls wait without schedules
        self.replicas = replicas  # of the pause bucket, if a pause from here has to make it
        self.stream = stream
        self.ledger = LedgerStore(ledger, js, ledger_bucket) if ledger is not None else None
        self.ledger_bucket = ledger_bucket
        self.letters = DeadLetterStore(
            js, dead_letter_stream, request_stream=stream, body_bucket=body_bucket
        )
        self.dead_letter_stream = dead_letter_stream
        self.functions = functions
        self.claims_bucket = claims_bucket
        self.function_state_bucket = function_state_bucket
        self._overview: tuple[float, Overview] | None = None
        self._lock = asyncio.Lock()
        self._holder = ""  # the stream that holds the queue's subject, once known

    async def holder(self) -> str:
        """The stream that holds the queue's subject: `nats_stream`, or another name it has in
        OpenFaaS Pro's layout (`OF_faas-request`); dead letters are replayed into it."""
        if not self._holder:
            try:
                found = await stream_holding(self.js, self.stream)
            except StartupError as exc:
                raise ConsoleUnavailable(str(exc)) from None
            self._holder = found or self.stream
            self.letters.stored_in = self._holder
        return self._holder

    # -- the overview ----------------------------------------------------------------------

    async def overview(self) -> Overview:
        async with self._lock:
            cached = self._overview
            if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
                return cached[1]
            problem = ""
            try:
                entries, partial = await self.recent_entries()
            except ConsoleUnavailable as exc:  # the rest of the page is still worth showing
                entries, partial, problem = [], False, str(exc)
            letters = await self.recent_letters()
            now = time.time()
            dead_times = [now - letter.age() for letter in letters if letter.age() < HOUR]
            overview = Overview(
                summarise(entries, dead_times, now),
                await self.consumers(),
                await self._stored(),
                partial,
                problem,
                await self._backlog(),
            )
            self._overview = (time.monotonic(), overview)
            return overview

    async def recent_entries(self) -> tuple[list[CallEntry], bool]:
        """Entries changed in the last hour (the ledger keeps one value per call), read
        through a short-lived consumer that starts an hour back, within the bounds above."""
        if self.ledger is None:
            return [], False
        start = datetime.fromtimestamp(time.time() - HOUR, UTC)
        config = js_api.ConsumerConfig(
            deliver_policy=js_api.DeliverPolicy.BY_START_TIME,
            opt_start_time=start,
            ack_policy=js_api.AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
        )
        entries = Standing(MAX_SCAN_ENTRIES)  # each call's own entry or state-sheet record
        count = 0
        on_sheets = QueuedOnSheets(MAX_SCAN_ENTRIES)  # calls known only from their sheet
        prefix = f"$KV.{self.ledger_bucket}."
        read = 0
        try:
            sub = await self.js.pull_subscribe(
                f"{prefix}>",
                stream=f"KV_{self.ledger_bucket}",
                config=config,
            )
        except (NatsError, TimeoutError) as exc:
            raise ConsoleUnavailable(f"call ledger unavailable: {describe(exc)}") from None
        try:
            while count < MAX_SCAN_ENTRIES and read < MAX_SCAN_BYTES:
                try:
                    batch = await sub.fetch(256, timeout=0.5)
                except TimeoutError:
                    return _with_sheets(entries, on_sheets), False
                for msg in batch:
                    read += len(msg.data)
                    key = msg.subject[len(prefix) :]
                    position = msg.metadata.sequence.stream
                    for entry, on_sheet in listed_entries(key, msg.data, position, on_sheets):
                        entry.result = None
                        entries.add(position, entry, on_sheet)
                        count += 1
                if batch and batch[-1].metadata.num_pending == 0:
                    return _with_sheets(entries, on_sheets), False
            return _with_sheets(entries, on_sheets), True
        except NatsError as exc:
            raise ConsoleUnavailable(f"call ledger unavailable: {describe(exc)}") from None
        finally:
            with contextlib.suppress(NatsError, TimeoutError):
                await sub.unsubscribe()  # else it goes away by itself (inactive_threshold)

    async def consumers(self) -> list[QueueConsumer]:
        try:
            infos = await self.js.consumers_info(await self.holder())
        except (NatsError, TimeoutError) as exc:
            reason = describe(exc)
            raise ConsoleUnavailable(f"cannot read {self.stream}'s consumers: {reason}") from None
        shown = []
        for info in infos[:MAX_CONSUMERS]:
            config = info.config
            shown.append(
                QueueConsumer(
                    info.name,
                    config.filter_subject or ", ".join(config.filter_subjects or []),
                    info.num_pending or 0,
                    info.num_ack_pending or 0,
                    info.num_waiting or 0,
                )
            )
        return shown

    async def paused(self) -> list[str]:
        """The functions paused by hand (none if the bucket is missing or unreadable: the page
        shows the rest)."""
        try:
            kv = await self.js.key_value(self.function_state_bucket)
            return [entry.function for entry in await FunctionStates(kv).paused()]
        except (NatsError, TimeoutError):
            return []

    async def set_paused(self, function: str, paused: bool, by: str) -> bool:
        """Pause (or resume) a function's queued calls, as `ferry functions pause|resume` does;
        False if a resume found it not paused. Raises ConsoleUnavailable or PauseRefused."""
        try:
            states = await FunctionStates.open(self.js, self.function_state_bucket, self.replicas)
            if paused:
                await states.pause(function, by=f"console:{by}")
                return True
            return await states.resume(function)
        except (StartupError, NatsError, TimeoutError) as exc:
            reason = exc if isinstance(exc, StartupError) else describe(exc)
            raise ConsoleUnavailable(f"the paused functions cannot be changed: {reason}") from None

    async def _backlog(self) -> QueueBacklog | None:
        try:
            return await read_backlog(self.js, self.stream)
        except BacklogUnavailable:
            return None

    async def _stored(self) -> int:
        try:
            info = await self.js.stream_info(await self.holder())
        except (NatsError, TimeoutError) as exc:
            raise ConsoleUnavailable(f"cannot read {self.stream}: {describe(exc)}") from None
        return info.state.messages

    # -- calls -----------------------------------------------------------------------------

    def _store(self) -> LedgerStore:
        if self.ledger is None:
            raise ConsoleUnavailable("the call ledger is off (call_ledger=false)")
        return self.ledger

    async def calls(self, *, function: str, state: str, limit: int) -> list[CallEntry]:
        try:
            return await self._store().list(function=function, state=state, limit=limit)
        except LedgerUnavailable as exc:
            raise ConsoleUnavailable(str(exc)) from None

    async def call(self, call_id: str) -> CallEntry | None:
        try:
            return await self._store().get(call_id)
        except LedgerUnavailable as exc:
            raise ConsoleUnavailable(str(exc)) from None

    async def waiting(self, entry: CallEntry) -> str:
        """Why a queued call waits (its function paused or its breaker open), or ""."""
        if entry.state.value not in WAITING_STATES:
            return ""
        return await why_waiting_in(self.js, self.function_state_bucket, entry.function)

    async def cancel(self, call_id: str) -> CancelAnswer:
        """The ledger's cancel, and a delayed call's waiting message removed, as the call
        routes and `ferry calls cancel` do."""
        unschedule = functools.partial(
            asyncq_unschedule, self.js, self.stream, delayed=self.delayed_stream
        )
        try:
            answer, _ = await cancel_call(self._store(), call_id, unschedule)
        except FerryError as exc:  # the ledger or the stream could not be changed
            raise ConsoleUnavailable(str(exc)) from None
        return answer

    # -- dead letters ----------------------------------------------------------------------

    async def replay(self, letters: Sequence[DeadLetter]) -> int:
        await self.holder()
        return await self.letters.replay(letters)

    async def purge(self, letters: Sequence[DeadLetter]) -> int:
        return await self.letters.discard(letters)

    async def recent_letters(self, limit: int = MAX_LETTERS) -> list[DeadLetter]:
        """The newest `limit` dead letters, newest first."""
        try:
            info = await self.js.stream_info(self.dead_letter_stream)
        except NotFoundError:
            return []
        except (NatsError, TimeoutError) as exc:
            raise ConsoleUnavailable(f"cannot read dead letters: {describe(exc)}") from None
        letters: list[DeadLetter] = []
        seq = info.state.last_seq
        if not info.state.messages:
            return []
        lowest = max(info.state.first_seq, seq - 4 * limit, 1)  # gaps (replayed, purged) count
        while seq >= lowest and len(letters) < limit:
            letter = await self.letter(seq)
            if letter is not None:
                letters.append(letter)
            seq -= 1
        return letters

    async def letter(self, seq: int) -> DeadLetter | None:
        try:
            raw = await self.js.get_msg(self.dead_letter_stream, seq=seq)
        except NotFoundError:
            return None
        except (NatsError, TimeoutError) as exc:
            raise ConsoleUnavailable(f"cannot read dead letters: {describe(exc)}") from None
        return DeadLetter(seq, raw.subject or "", raw.data or b"", decode_headers(raw.headers))

    # -- cron ------------------------------------------------------------------------------

    async def claimed_by(self, function: str, unix_ms: int) -> str | None:
        """Who claimed a cron slot (the claims bucket's value), None if nobody did or the
        bucket does not exist."""
        from connectors.cron.claims import claim_key

        try:
            kv = await self.js.key_value(self.claims_bucket)
            entry = await kv.get(claim_key(function, unix_ms), validate_keys=False)
        except (NatsError, TimeoutError):
            return None
        return (entry.value or b"").decode("utf-8", "replace")[:200]


def _with_sheets(entries: Standing, on_sheets: QueuedOnSheets) -> list[CallEntry]:
    """The entries read, and the calls known only from their front door's sheet (queued)."""
    return [entry for _, entry in entries.records()] + [e for _, e in on_sheets.standing()]

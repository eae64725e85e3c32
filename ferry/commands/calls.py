"""`ferry calls`: look up, read the answer of, cancel and list async calls in the call ledger."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

from asyncq.function_state import WAITING_STATES, why_waiting_in
from asyncq.schedule import unschedule as unschedule_call
from connectors.core.errors import ConfigError, FerryError
from connectors.core.logs import escape_controls
from connectors.core.runner import EXIT_OK, fail
from connectors.core.settings import describe_settings, load_settings
from ferry.jetstream_session import open_jetstream, quiet_logging, run_action
from ferry.ledger_settings import LedgerCommandSettings
from ledger.bucket import LedgerUnavailable, open_existing
from ledger.delayed import Unschedule, cancel_call
from ledger.entries import CallEntry, CallState
from ledger.store import UNCONFIRMED, CancelAnswer, LedgerStore

HELP = (
    "get: show one call's entry (state, attempts, last status, times, callback outcome).\n"
    "result: write the function's stored answer to standard output.\n"
    "cancel: cancel a scheduled, queued or retrying call; it is never invoked (a scheduled one\n"
    "  is removed from the stream, a queued one the worker acks without a call).\n"
    "  An id the ledger has not seen yet is cancelled too (shown with pending: true).\n"
    "list: the most recently changed calls, newest first.\n"
    "An unknown call id, an unfinished call or an answer not stored is exit status 1;\n"
    "bad settings, NATS out of reach or the ledger's bucket missing is exit status 2.\n"
    "These commands never create or change the bucket."
)
MAX_LIST = 10_000


EPILOG = describe_settings(LedgerCommandSettings)


class NotAnswered(FerryError):
    """The ledger has no such call, or it cannot give what was asked (exit status 1)."""


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("get", "show a call's entry"),
        ("result", "print a finished call's stored answer"),
        ("cancel", "cancel a scheduled, queued or retrying call"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("call_id", metavar="ID", help="the call's X-Call-Id")
        if name != "result":
            action.add_argument("--json", action="store_true", help="print JSON")
    listing = actions.add_parser("list", help="list calls, most recently changed first")
    listing.add_argument("--function", "-f", default="", help="only this function's calls")
    listing.add_argument(
        "--state", "-s", default="", choices=[s.value for s in CallState], help="only this state"
    )
    listing.add_argument("--limit", "-n", type=_limit, default=50, help="at most N calls [50]")
    listing.add_argument("--json", action="store_true", help="print JSON (one array)")


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number") from None
    if not 1 <= value <= MAX_LIST:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIST}")
    return value


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    try:
        settings = load_settings(LedgerCommandSettings, os.environ)
    except ConfigError as exc:
        return fail(str(exc))
    if not settings.ledger.call_ledger:
        return fail("call_ledger=false: the call ledger is off")
    return run_action(_act(settings, args))


async def _act(settings: LedgerCommandSettings, args: argparse.Namespace) -> int:
    try:
        return await _answer(settings, args)
    except LedgerUnavailable as exc:  # the ledger cannot say: not "unknown" (exit 1)
        return fail(str(exc))


async def _answer(settings: LedgerCommandSettings, args: argparse.Namespace) -> int:
    async with open_jetstream(settings.nats) as js:
        bucket = settings.ledger.call_ledger_bucket
        store = LedgerStore(await open_existing(js, settings.ledger), js, bucket)
        if args.action == "list":
            entries = await store.list(function=args.function, state=args.state, limit=args.limit)
            if args.json:
                print(json.dumps([e.public() for e in entries], indent=2))
            else:
                print_table(entries)
            return EXIT_OK
        call_id: str = args.call_id
        if args.action == "cancel":
            unschedule = functools.partial(
                unschedule_call, js, settings.nats.nats_stream, delayed=settings.nats.delayed_stream
            )
            return await _cancel(store, call_id, args.json, unschedule)
        entry = await store.get(call_id)
        if entry is None:
            raise NotAnswered(f"no call {call_id} in the ledger (unknown or expired)")
        if args.action == "get":
            waiting = ""
            if entry.state.value in WAITING_STATES:
                bucket = settings.nats.function_state_bucket
                waiting = await why_waiting_in(js, bucket, entry.function)
            _show(entry, args.json, waiting=waiting)
            return EXIT_OK
        return _write_result(entry)


async def _cancel(
    store: LedgerStore, call_id: str, as_json: bool, unschedule: Unschedule | None
) -> int:
    answer, entry = await cancel_call(store, call_id, unschedule)
    if answer is CancelAnswer.TOO_LATE:
        raise NotAnswered(f"call {call_id} cannot be cancelled: it is {entry.state}")
    if answer is CancelAnswer.UNCONFIRMED:
        raise NotAnswered(f"call {call_id}: {UNCONFIRMED}")
    _show(entry, as_json, pending=answer is CancelAnswer.PENDING)
    return EXIT_OK


def _write_result(entry: CallEntry) -> int:
    if not entry.state.final:
        raise NotAnswered(f"call {entry.call_id} has not finished (it is {entry.state})")
    if entry.result is None:
        raise NotAnswered(f"the answer of call {entry.call_id} was not stored")
    sys.stdout.buffer.write(entry.result.body)
    sys.stdout.buffer.flush()
    return EXIT_OK


def _show(entry: CallEntry, as_json: bool, *, pending: bool = False, waiting: str = "") -> None:
    data = entry.public()
    if pending:  # cancelled before the ledger had seen the call
        data["pending"] = True
    if waiting:  # queued while its function is paused or its breaker open
        data["waiting"] = waiting
    if as_json:
        print(json.dumps(data, indent=2))
        return
    width = max(len(k) for k in data) + 1
    for key, value in data.items():
        shown = "-" if value is None else str(value).lower() if isinstance(value, bool) else value
        print(f"{key + ':':{width}} {escape_controls(str(shown))}")


def print_table(entries: list[CallEntry]) -> None:
    rows: list[list[str]] = [["CALL ID", "FUNCTION", "STATE", "ATTEMPTS", "STATUS", "UPDATED"]]
    for e in entries:
        cells = (e.call_id, e.function, e.state.value, str(e.attempts), str(e.status or "-"))
        rows.append([*map(escape_controls, cells), e.updated_at])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if not entries:
        print("(no calls)")

"""`ferry dead-letters`: look at, replay or purge the calls the queue worker gave up on."""

from __future__ import annotations

import argparse
import os

from asyncq.dead_letter_store import DeadLetter, DeadLetterStore
from asyncq.jetstream import stream_holding
from asyncq.settings import QueueNatsSettings
from connectors.core.errors import ConfigError
from connectors.core.logs import escape_controls
from connectors.core.runner import EXIT_OK, fail
from connectors.core.settings import describe_settings, load_settings
from connectors.core.targets import short_id
from ferry.jetstream_session import open_jetstream, quiet_logging, run_action

HELP = (
    "list: show dead letters (call id, function, reason, attempts, last status, age).\n"
    "replay: put them back on their original queue, then remove them; a message that fails\n"
    "  again is dead-lettered again. Publish comes before delete, so a crash half way loses\n"
    "  nothing, and a re-run inside the duplicate window does not queue a call twice.\n"
    "purge: remove them for good."
)
EPILOG = describe_settings(QueueNatsSettings)


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show dead letters, oldest first")
    listing.add_argument("--function", "-f", default="", help="only this function's")
    replay = actions.add_parser("replay", help="re-queue dead letters, then remove them")
    replay.add_argument("--function", "-f", default="", help="only this function's")
    replay.add_argument("call_ids", nargs="*", metavar="CALL_ID", help="only these calls")
    purge = actions.add_parser("purge", help="delete dead letters")
    purge.add_argument("--function", "-f", default="", help="only this function's")


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    if getattr(args, "call_ids", None) and args.function:
        return fail("replay takes either --function or CALL_IDs, not both")
    try:
        settings = load_settings(QueueNatsSettings, os.environ)
    except ConfigError as exc:
        return fail(str(exc))
    return run_action(_act(settings, args))


async def _act(settings: QueueNatsSettings, args: argparse.Namespace) -> int:
    async with open_jetstream(settings) as js:
        store = DeadLetterStore(
            js,
            settings.dead_letter_stream,
            request_stream=settings.nats_stream,
            body_bucket=settings.large_body_bucket,
            stored_in=await stream_holding(js, settings.nats_stream) or "",
        )
        if args.action == "list":
            print_table(await store.read(args.function))
            return EXIT_OK
        if args.action == "purge":
            count = await store.purge(args.function)
            print(f"purged {count} dead letter{'' if count == 1 else 's'}")
            return EXIT_OK
        if args.call_ids:
            letters, missing = await store.find(args.call_ids)
            if missing:
                return fail(f"no dead letter for call id {', '.join(missing)}")
        else:
            letters = await store.read(args.function)
        count = await store.replay(letters, on_replayed=_print_replayed)
        print(f"replayed {count} dead letter{'' if count == 1 else 's'}")
        return EXIT_OK


def _print_replayed(letter: DeadLetter) -> None:
    text = (
        f"replayed {short_id(letter.call_id) or '-'} ({letter.function or '?'}) "
        f"to {letter.original_subject}"
    )
    print(escape_controls(text))


def print_table(letters: list[DeadLetter]) -> None:
    rows = [("CALL ID", "FUNCTION", "ATTEMPTS", "LAST STATUS", "AGE", "REASON")]
    for d in letters:
        age = _age(d.age())
        cells = (
            short_id(d.call_id) or "-",
            d.function or "-",
            d.attempts,
            d.last_status or "-",
            age,
            d.reason,
        )
        call_id, function, attempts, status, age, reason = map(escape_controls, cells)
        rows.append((call_id, function, attempts, status, age, reason))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)), row[5])
    if not letters:
        print("(no dead letters)")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"

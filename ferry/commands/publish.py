"""`ferry publish`: enqueue one async call from the shell, exactly as the front door would."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from asyncq.codec import QueueRequest
from asyncq.jetstream import stream_holding
from asyncq.large_bodies import BodyStore
from asyncq.publisher import QUEUE_ANNOTATION, Publisher, build_request
from asyncq.timing import CallTiming, TimingProblem, read_timing
from connectors.core.errors import CallbackRefused, ConfigError
from connectors.core.runner import EXIT_OK, fail
from connectors.core.settings import describe_settings, load_settings
from connectors.core.targets import call_id_problem, function_name_problem, path_problem, shorten
from connectors.core.urlguard import CallbackPolicy
from ferry.jetstream_session import open_jetstream, quiet_logging, run_action
from ferry.ledger_settings import LedgerCommandSettings
from ledger.bucket import open_or_handle
from ledger.delayed import scheduled_value
from ledger.queued import record_queued

HELP = (
    "Store one async invocation of NAME on NATS JetStream (the QueueRequest the front door\n"
    "writes for POST /async-function/NAME) and print its call id. Re-running with the same\n"
    "--header X-Call-Id:ID inside the duplicate window stores it once (an ID is at most 128\n"
    "letters, digits and - . _ ~ : @ + =, as the front door takes). A body too large for\n"
    "one NATS message is stored in the large_body_bucket object store, as the front door does."
)
EPILOG = describe_settings(LedgerCommandSettings)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="function, as name or name.namespace")
    parser.add_argument(
        "--data", "-d", default="", help="request body: text, @FILE, or @- for standard input"
    )
    parser.add_argument("--callback", default="", metavar="URL", help="X-Callback-Url")
    parser.add_argument(
        "--header",
        "-H",
        action="append",
        default=[],
        metavar="K:V",
        help="request header (repeatable)",
    )
    parser.add_argument("--queue", default="", metavar="Q", help="named queue (default: none)")
    parser.add_argument("--method", default="POST", help="HTTP method for the function [POST]")
    parser.add_argument("--path", default="", help="path after the function name, e.g. /sub")
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--delay", metavar="D", help="run no earlier than D from now (X-Delay: 30s, 10m, 2h)"
    )
    when.add_argument(
        "--not-before",
        metavar="T",
        help="run no earlier than T (X-Not-Before: RFC 3339 or Unix seconds)",
    )
    stale = parser.add_mutually_exclusive_group()
    stale.add_argument(
        "--max-age", metavar="D", help="never run once D has passed since it was due (X-Max-Age)"
    )
    stale.add_argument(
        "--expires-at", metavar="T", help="never run after T (X-Expires-At: RFC 3339 or Unix)"
    )


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    try:
        settings = load_settings(LedgerCommandSettings, os.environ)
        request = build(args)
        timing = _timing(args, settings.nats.max_delay)
    except ConfigError as exc:
        return fail(str(exc))
    return run_action(_enqueue(settings, request, timing))


def _timing(args: argparse.Namespace, max_delay: float) -> CallTiming | None:
    """What --delay, --not-before, --max-age and --expires-at ask for, read as the front door
    reads X-Delay and the like."""
    options = {
        "x-delay": args.delay,
        "x-not-before": args.not_before,
        "x-max-age": args.max_age,
        "x-expires-at": args.expires_at,
    }
    found = {name: value.strip() for name, value in options.items() if value is not None}
    try:
        return read_timing(found, now=time.time(), max_delay=max_delay)
    except TimingProblem as exc:
        text = str(exc)
        for header, option in _OPTIONS.items():
            text = text.replace(header, option)
        raise ConfigError(text) from None


_OPTIONS = {
    "X-Delay": "--delay",
    "X-Not-Before": "--not-before",
    "X-Max-Age": "--max-age",
    "X-Expires-At": "--expires-at",
}


def build(args: argparse.Namespace) -> QueueRequest:
    """The QueueRequest for the command line; ConfigError names what is wrong."""
    problem = function_name_problem(args.name)  # what the worker would dead-letter at once
    if problem is not None:
        raise ConfigError(f"NAME: {problem}")
    if args.callback:
        try:
            CallbackPolicy.build((), allow_private=True).check_url(args.callback)
        except CallbackRefused as exc:
            raise ConfigError(f"--callback: {exc}") from None
    if args.path and not args.path.startswith("/"):
        raise ConfigError(f"--path {args.path!r} must start with /")
    problem = path_problem(args.path)
    if problem is not None:
        raise ConfigError(f"--path: {problem}")
    return build_request(
        args.name,
        body=_body(args.data),
        method=args.method.upper(),
        path=args.path,
        headers=[_header(h) for h in args.header],
        annotations={QUEUE_ANNOTATION: args.queue} if args.queue else None,
        callback_url=args.callback,
    )


def _body(data: str) -> bytes:
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as exc:
            raise ConfigError(f"--data {data}: {exc.strerror or exc}") from None
    return data.encode()


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or " " in name.strip():
        raise ConfigError(f"--header {shorten(text)}: expected NAME:VALUE")
    name, value = name.strip(), value.strip()
    if value and name.lower() == "x-call-id" and (problem := call_id_problem(value)):
        raise ConfigError(f"--header: {problem}")  # the front door answers 400 to it
    return name, value


async def _enqueue(
    settings: LedgerCommandSettings, request: QueueRequest, timing: CallTiming | None
) -> int:
    """Store the call (and its `queued` or `scheduled` entry), then print its id once the
    connection is done."""
    await _store(settings, request, timing)
    print(request.call_id)
    return EXIT_OK


async def _store(
    settings: LedgerCommandSettings, request: QueueRequest, timing: CallTiming | None
) -> None:
    nats = settings.nats
    async with open_jetstream(nats) as js:
        bodies = BodyStore.from_settings(js, nats)
        holder = await stream_holding(js, nats.nats_stream)
        publisher = Publisher(
            js, nats.nats_stream, bodies, stored_in=holder or "", delayed=nats.delayed_stream
        )
        await publisher.learn_layout()
        if len(request.body) > publisher.surely_inline:  # it may go to the object store
            await bodies.ensure()
        publish = publisher.enqueue(request, timing=timing)
        if not settings.ledger.call_ledger:
            await publish
            return
        kv = await open_or_handle(
            js, settings.ledger, nats.nats_stream_replicas, who="ferry publish"
        )
        if kv is None:  # the bucket must not be written (it could not be bounded)
            await publish
            return
        due = timing.not_before if timing is not None else None
        value = scheduled_value(request, due) if due is not None else None
        await record_queued(kv, request, publish, value)

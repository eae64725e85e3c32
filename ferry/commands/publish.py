"""`ferry publish`: enqueue one async call from the shell, exactly as the front door would."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from asyncq.codec import QueueRequest
from asyncq.jetstream import stream_holding
from asyncq.large_bodies import BodyStore
from asyncq.publisher import QUEUE_ANNOTATION, Publisher, build_request
from connectors.core.errors import CallbackRefused, ConfigError
from connectors.core.runner import EXIT_OK, fail
from connectors.core.settings import describe_settings, load_settings
from connectors.core.targets import call_id_problem, function_name_problem, path_problem, shorten
from connectors.core.urlguard import CallbackPolicy
from ferry.jetstream_session import open_jetstream, quiet_logging, run_action
from ferry.ledger_settings import LedgerCommandSettings
from ledger.store import open_or_handle, record_queued

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


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    try:
        settings = load_settings(LedgerCommandSettings, os.environ)
        request = build(args)
    except ConfigError as exc:
        return fail(str(exc))
    return run_action(_enqueue(settings, request))


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


async def _enqueue(settings: LedgerCommandSettings, request: QueueRequest) -> int:
    """Store the call (and its `queued` entry), then print its id once the connection is done."""
    await _store(settings, request)
    print(request.call_id)
    return EXIT_OK


async def _store(settings: LedgerCommandSettings, request: QueueRequest) -> None:
    nats = settings.nats
    async with open_jetstream(nats) as js:
        bodies = BodyStore.from_settings(js, nats)
        holder = await stream_holding(js, nats.nats_stream)
        publisher = Publisher(js, nats.nats_stream, bodies, stored_in=holder or "")
        await publisher.learn_layout()
        if len(request.body) > publisher.surely_inline:  # it may go to the object store
            await bodies.ensure()
        if not settings.ledger.call_ledger:
            await publisher.enqueue(request)
            return
        kv = await open_or_handle(
            js, settings.ledger, nats.nats_stream_replicas, who="ferry publish"
        )
        if kv is None:  # the bucket must not be written (it could not be bounded)
            await publisher.enqueue(request)
            return
        await record_queued(kv, request, publisher.enqueue(request))

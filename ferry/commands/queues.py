"""`ferry queues`: what waits in the queue per function, and how much of it workers hold."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

from asyncq.backlog import QueueBacklog, read_backlog
from asyncq.settings import QueueNatsSettings
from connectors.core.errors import ConfigError
from connectors.core.logs import escape_controls
from connectors.core.runner import EXIT_OK, fail
from connectors.core.settings import describe_settings, load_settings
from connectors.jetstream.connect import connect
from ferry.jetstream_session import quiet_logging, run_action

HELP = (
    "Per function: the calls stored on its subject (waiting, or held by a worker) and how many\n"
    "of them workers hold now, largest backlog first (fair mode's per-function subjects), and\n"
    "the calls on the plain subject (waiting there, or held by a worker that runs them from\n"
    "there rather than moving them: the worker's queue_worker_pending_messages counts those\n"
    "per function). Reads NATS only and creates nothing; each function's concurrency limit\n"
    "is the worker's metric queue_worker_function_limit."
)
EPILOG = describe_settings(QueueNatsSettings)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    try:
        settings = load_settings(QueueNatsSettings, os.environ)
    except ConfigError as exc:
        return fail(str(exc))
    return run_action(_act(settings, args.json))


async def _act(settings: QueueNatsSettings, as_json: bool) -> int:
    connection = await connect(settings, name="ferry-cli")
    try:
        backlog = await read_backlog(connection.client.jetstream(), settings.nats_stream)
    finally:
        await connection.close()
    if as_json:
        print(json.dumps(asdict(backlog), indent=2))
    else:
        print_table(backlog)
    return EXIT_OK


def print_table(backlog: QueueBacklog) -> None:
    print(f"{'FUNCTION':<40} {'QUEUE':<16} {'STORED':>8} {'IN FLIGHT':>10}")
    for row in backlog.functions:
        held = "-" if row.in_flight < 0 else str(row.in_flight)
        name = escape_controls(row.function)[:40]
        print(f"{name:<40} {escape_controls(row.queue)[:16]:<16} {row.stored:>8} {held:>10}")
    if backlog.more:
        print(f"... and {backlog.more} more functions with calls")
    plain = f"{backlog.unsorted} calls on the plain subjects (waiting or held)"
    print(f"stream {backlog.stream}: {plain}")

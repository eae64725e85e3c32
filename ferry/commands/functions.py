"""`ferry functions pause|resume|list`: stop a function's queued calls from being taken (its
calls wait in JetStream, unattempted) until it is resumed; every worker replica honours it."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from dataclasses import asdict

from asyncq.function_state import MAX_NAME, FunctionStates, PauseRefused
from asyncq.settings import QueueNatsSettings
from connectors.core.errors import ConfigError
from connectors.core.logs import escape_controls
from connectors.core.runner import EXIT_OK, fail
from connectors.core.settings import describe_settings, load_settings
from connectors.jetstream.connect import connect
from ferry.jetstream_session import quiet_logging, run_action

HELP = (
    "Pause a function during an outage: workers (fair mode) take none of its queued calls,\n"
    "which wait in JetStream without using an attempt; calls already running end as usual.\n"
    "Resume it and they run. The pause is kept in NATS (function_state_bucket), so every\n"
    "worker replica honours it and it survives restarts."
)
EPILOG = describe_settings(QueueNatsSettings)
EXIT_BAD_INPUT = 2


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    pause = actions.add_parser("pause", help="take none of a function's calls until resumed")
    pause.add_argument("name", metavar="NAME", help="function name (name or name.namespace)")
    resume = actions.add_parser("resume", help="let a paused function's calls run again")
    resume.add_argument("name", metavar="NAME")
    listing = actions.add_parser("list", help="the paused functions")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    try:
        settings = load_settings(QueueNatsSettings, os.environ)
    except ConfigError as exc:
        return fail(str(exc))
    name = getattr(args, "name", None)
    if name is not None and (not name.strip() or name != name.strip() or len(name) > MAX_NAME):
        return fail(f"NAME: expected a function name (1 to {MAX_NAME} characters)")
    return run_action(_act(settings, args))


async def _act(settings: QueueNatsSettings, args: argparse.Namespace) -> int:
    connection = await connect(settings, name="ferry-cli")
    try:
        states = await FunctionStates.open(
            connection.client.jetstream(),
            settings.function_state_bucket,
            settings.nats_stream_replicas,
        )
        if args.action == "pause":
            try:
                await states.pause(args.name, by=f"ferry functions ({_user()})")
            except PauseRefused as exc:
                return fail(str(exc), EXIT_BAD_INPUT)
            print(f"paused {escape_controls(args.name)}")
        elif args.action == "resume":
            was = await states.resume(args.name)
            state = "resumed" if was else "was not paused:"
            print(f"{state} {escape_controls(args.name)}")
        else:
            paused = await states.paused()
            if args.json:
                print(json.dumps([asdict(entry) for entry in paused], indent=2))
            else:
                print(f"{'FUNCTION':<40} {'PAUSED AT':<22} BY")
                for entry in paused:
                    name = escape_controls(entry.function)[:40]
                    print(f"{name:<40} {entry.paused_at:<22} {escape_controls(entry.by)}")
    finally:
        await connection.close()
    return EXIT_OK


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"

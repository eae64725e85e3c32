"""The `ferry` command: one subcommand per process or tool, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from connectors.core.version import VERSION

# subcommand -> module in ferry.commands (kept in the order `ferry --help` lists them)
COMMANDS: dict[str, str] = {
    "queue-worker": "queue_worker",
    "gateway": "gateway",
    "publish": "publish",
    "dead-letters": "dead_letters",
    "calls": "calls",
    "queues": "queues",
    "functions": "functions",
    "console": "console",
    "dev": "dev",
    "sqs-connector": "sqs_connector",
    "cron-connector": "cron_connector",
    "kafka-connector": "kafka_connector",
}

SUMMARIES: dict[str, str] = {
    "queue-worker": "run queued async invocations from NATS JetStream",
    "gateway": "the async front door: queue /async-function calls, proxy the rest",
    "publish": "enqueue one async call from the shell and print its call id",
    "dead-letters": "list, replay or purge dead-lettered calls",
    "calls": "look up, read the answer of, cancel or list async calls (the call ledger)",
    "queues": "per function: calls waiting in the queue and held by workers",
    "functions": "pause or resume a function's queued calls (e.g. during its outage)",
    "console": "the web console: calls, queues, dead letters and schedules in a browser",
    "dev": "run NATS, the gateway, example functions and a worker on this machine",
    "sqs-connector": "invoke functions for the messages of SQS queues",
    "cron-connector": "invoke functions on their cron schedules",
    "kafka-connector": "invoke functions for Kafka records (at-least-once)",
}


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"ferry.commands.{COMMANDS[name]}")


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferry",
        description="Async queue worker and event connectors for OpenFaaS-compatible gateways.",
    )
    parser.add_argument("--version", action="version", version=f"ferry {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if name == command:
            module = _load(name)
            child = sub.add_parser(
                name,
                help=SUMMARIES.get(name, ""),
                description=module.HELP,
                epilog=getattr(module, "EPILOG", None),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            module.configure(child)
            child.set_defaults(run=module.run)
        else:
            sub.add_parser(name, help=SUMMARIES.get(name, ""), add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(args_list)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

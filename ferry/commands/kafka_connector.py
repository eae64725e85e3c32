"""`ferry kafka-connector`: the Kafka event connector as a process."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from connectors.core import tracing
from connectors.core.openfaas_settings import LICENSE_FLAG, describe_unread
from connectors.core.runner import run_from_env
from connectors.core.settings import describe_settings
from connectors.kafka.config import KafkaConnectorConfig

HELP = (
    "Consume Kafka topics and invoke every function whose `topic` annotation names the\n"
    "record's topic, with retries. An offset is committed only once that record and every\n"
    "earlier one of its partition has a final outcome (success or dead-lettered).\n"
    "Configured by environment variables (OpenFaaS names). The OpenFaaS Pro kafka-connector's\n"
    "flags are accepted too (they set the variables named in their help)."
)
EPILOG = "\n\n".join(
    (describe_settings(KafkaConnectorConfig), describe_unread(KafkaConnectorConfig), tracing.HELP)
)

# OpenFaaS Pro kafka-connector flag -> the variable it sets here
FILE_FLAGS = {
    "username_file": "sasl_username_file",
    "password_file": "sasl_password_file",
    "ca_file": "tls_ca_file",
    "cert_file": "tls_cert_file",
    "key_file": "tls_key_file",
}


def configure(parser: argparse.ArgumentParser) -> None:
    """The OpenFaaS Pro chart passes TLS and SASL as flags; each maps onto a variable."""
    parser.add_argument("-tls", action="store_true", help="same as tls=true")
    for dest, variable in FILE_FLAGS.items():
        parser.add_argument(
            f"-{dest.replace('_', '-')}", dest=dest, metavar="FILE", help=f"same as {variable}"
        )
    parser.add_argument(
        LICENSE_FLAG, dest="license_file", metavar="FILE", help="accepted and ignored (no licence)"
    )


def flag_environ(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with the flags given laid over it.

    A user-name file without `sasl_mechanism` means SASL PLAIN, as in the OpenFaaS connector.
    """
    env = dict(environ)
    if getattr(args, "tls", False):
        env["tls"] = "true"
    for dest, variable in FILE_FLAGS.items():
        value = getattr(args, dest, None)
        if value:
            env[variable] = value
    if getattr(args, "username_file", None) and not env.get("sasl_mechanism", "").strip():
        env["sasl_mechanism"] = "plain"
    return env


def run(args: argparse.Namespace) -> int:
    from connectors.kafka.connector import KafkaConnector

    ignored = [LICENSE_FLAG] if getattr(args, "license_file", None) else []
    return run_from_env(
        KafkaConnectorConfig,
        KafkaConnector,
        lambda c: c.runtime,
        environ=flag_environ(args, os.environ),
        ignored_flags=ignored,
    )

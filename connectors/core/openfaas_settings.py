"""OpenFaaS settings ferry does not read, and why: named in `--help` and warned about at start.

Someone migrating keeps the OpenFaaS chart's environment. A name ferry reads needs nothing
here; a name it does not read would otherwise be dropped in silence, and the operator would
believe a setting is in force that is not. So each process names, in one warning line at
start-up, the ones set in its environment, and its `--help` lists them with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connectors.core.settings import read_names

_RECONNECT = "ferry reconnects to NATS forever; /readyz answers 503 while disconnected"
_PULL = (
    "ferry sizes its JetStream pull requests from its free slots (consumer_pull_max_messages "
    "caps one function's)"
)
_PARTITIONS = (
    "ferry does not partition a queue: replicas share its consumers, and in fair mode each "
    "function has its own"
)
_WORKER_ONLY = "a queue-worker setting"
_DIRECT = "ferry always invokes {gateway_url}/function/{name}"
_NO_NATS = "this process does not use NATS (the NATS processes read it)"
_PRO_NATS_ADDRESS = (
    "only the queue worker and the front door build nats_url from it; the cron connector's"
    " slot claims take nats_url alone (empty: no claims), the Kafka and SQS connectors use no NATS"
)

# name -> why ferry does not read it (CE queue-worker, the Pro JetStream queue-worker, the
# connectors). Names a process does read are left out of its warning and its --help, so a
# setting added later (e.g. by the shared NATS settings) drops out of this list by itself.
NOT_READ: dict[str, str] = {
    "faas_nats_queue_group": "replicas share one durable consumer (nats_durable)",
    "faas_nats_cluster_name": "NATS Streaming only; ferry uses JetStream",
    "faas_nats_durable_queue_subscription": "NATS Streaming only; ferry's consumer is durable",
    "faas_max_reconnect": _RECONNECT,
    "faas_reconnect_delay": _RECONNECT,
    "max_reconnect": _RECONNECT,
    "reconnect_delay": _RECONNECT,
    "gateway_invoke": _DIRECT,
    "faas_function_suffix": _DIRECT,
    "nats_host": _PRO_NATS_ADDRESS,
    "nats_port": _PRO_NATS_ADDRESS,
    "nats_stream_replicas": _NO_NATS,
    "tls_insecure": "ferry always verifies TLS certificates",
    "backoff": "ferry's back-off is always exponential with full jitter",
    "max_waiting": _PULL,
    "pull_max_messages": _PULL,
    "mode": _WORKER_ONLY,
    "scaling_mode": _WORKER_ONLY,
    "limiter_enabled": _WORKER_ONLY,
    "consumer_pull_max_messages": _WORKER_ONLY,
    "consumer_inactive_threshold": _WORKER_ONLY,
    "adaptive_concurrency": (
        "ferry's adaptive limit per function is limiter_enabled (fair mode, connectors)"
    ),
    "queue_partitions": _PARTITIONS,
    "filter_partition": _PARTITIONS,
    "default_function_name": (
        "a worker serves every function of its queue; dedicate one with a named queue "
        "(com.openfaas.queue, queue_name)"
    ),
}
# Command-line flags of OpenFaaS Pro images that ferry accepts and ignores.
LICENSE_FLAG = "-license-file"


def unread_names(config_cls: type[Any], environ: Mapping[str, str]) -> list[str]:
    """The OpenFaaS names set in `environ` that a process configured by `config_cls` ignores."""
    read = read_names(config_cls)
    return sorted(name for name in NOT_READ if name in environ and name not in read)


def warning_line(names: Iterable[str]) -> str:
    """The one start-up line naming every ignored OpenFaaS setting (empty: none)."""
    listed = ", ".join(names)
    if not listed:
        return ""
    return (
        f"ignoring OpenFaaS settings ferry does not read: {listed} "
        "(the reasons: --help and docs/migrating-from-openfaas.md)"
    )


def describe_unread(config_cls: type[Any]) -> str:
    """The `--help` section listing the OpenFaaS names this process does not read."""
    read = read_names(config_cls)
    names = [name for name in NOT_READ if name not in read]
    width = max(len(name) for name in names) + 2
    lines = ["OpenFaaS settings not read (named in one warning at start-up if set):"]
    lines += [f"  {name.ljust(width)}{NOT_READ[name]}" for name in names]
    return "\n".join(lines)

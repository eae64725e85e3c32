"""Everything the queue worker reads from its environment, in one typed object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from connectors.core.config import CallbackSettings, GatewaySettings, RetrySettings, RuntimeSettings
from connectors.core.settings import duration, group, int_in, positive_duration, setting
from queue_worker.layout import DEAD_LETTER_STREAM, DEFAULT_STREAM


def _nats_from_parts(environ: Mapping[str, str]) -> str | None:
    host = environ.get("faas_nats_address", "").strip()
    nats_port = environ.get("faas_nats_port", "").strip()
    if not host and not nats_port:
        return None
    return f"nats://{host or 'nats'}:{nats_port or '4222'}"


def nats_url_parse(text: str) -> str:
    if "://" not in text:
        text = f"nats://{text}"
    scheme = text.split("://", 1)[0]
    if scheme not in {"nats", "tls", "ws", "wss"}:
        raise ValueError("expected a nats:// URL")
    return text


@dataclass(frozen=True)
class NatsSettings:
    nats_url: str = setting(
        "nats_url",
        "nats://nats:4222",
        "NATS server with JetStream",
        nats_url_parse,
        fallback=_nats_from_parts,
        fallback_help="faas_nats_address [nats] and faas_nats_port [4222]",
        fallback_reads=("faas_nats_address", "faas_nats_port"),
    )
    nats_stream: str = setting(
        "nats_stream", DEFAULT_STREAM, "stream of queued requests", aliases=("faas_nats_channel",)
    )
    dead_letter_stream: str = setting(
        "dead_letter_stream", DEAD_LETTER_STREAM, "stream that keeps dead letters"
    )
    nats_connect_timeout: float = setting(
        "nats_connect_timeout",
        5.0,
        "bound on the first connection at start-up",
        positive_duration,
        shown="5s",
    )


@dataclass(frozen=True)
class QueueWorkerConfig:
    nats: NatsSettings = group(NatsSettings)
    queue_name: str = setting(
        "queue_name", "", "named queue to serve (com.openfaas.queue); empty: the default queue"
    )
    max_inflight: int = setting(
        "max_inflight", 1, "invocations running at once in this worker", int_in(1, 100_000)
    )
    ack_wait: float = setting(
        "ack_wait",
        30.0,
        "JetStream redelivers a message not acknowledged or touched by then",
        duration,
        shown="30s",
    )
    gateway: GatewaySettings = group(GatewaySettings)
    retry: RetrySettings = group(RetrySettings)
    callbacks: CallbackSettings = group(CallbackSettings)
    runtime: RuntimeSettings = group(RuntimeSettings)

    def __post_init__(self) -> None:
        if self.ack_wait < 1:
            raise ValueError(f"ack_wait must be at least 1s (got {self.ack_wait:g}s)")

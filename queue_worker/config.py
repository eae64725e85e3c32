"""Everything the queue worker reads from its environment, in one typed object."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from connectors.core.config import CallbackSettings, GatewaySettings, RetrySettings, RuntimeSettings
from connectors.core.settings import duration, group, int_in, setting
from queue_worker.large_bodies import DEFAULT_BUCKET, DEFAULT_TTL
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


def bucket_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
        raise ValueError("expected letters, digits, - and _ (at most 64)")
    return text


def positive_duration(text: str) -> float:
    value = duration(text)
    if value <= 0:
        raise ValueError("must be longer than 0s")
    return value


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
        duration,
        shown="5s",
    )
    large_body_bucket: str = setting(
        "large_body_bucket",
        DEFAULT_BUCKET,
        "JetStream object store for call bodies too large for one message",
        bucket_name,
    )
    large_body_ttl: float = setting(
        "large_body_ttl",
        DEFAULT_TTL,
        "how long a stored body is kept at most (deleted sooner once its call is done)",
        positive_duration,
        shown="168h",
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

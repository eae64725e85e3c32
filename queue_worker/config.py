"""Everything the queue worker reads from its environment, in one typed object."""

from __future__ import annotations

from dataclasses import dataclass

from asyncq.settings import QueueNatsSettings
from connectors.core.config import CallbackSettings, GatewaySettings, RetrySettings, RuntimeSettings
from connectors.core.settings import duration, duration_at_least, group, int_in, setting
from ledger.settings import CallLedgerSettings

DEFAULT_MAX_HELD_ANSWER_BYTES = 64 * 1024 * 1024
MIN_HELD_ANSWER_BYTES = 64 * 1024


def prefetch_parse(text: str) -> int | None:
    if text.strip().lower() in {"", "auto"}:
        return None
    value: int = int_in(0, 10_000)(text)
    return value


@dataclass(frozen=True)
class QueueWorkerConfig:
    nats: QueueNatsSettings = group(QueueNatsSettings)
    queue_name: str = setting(
        "queue_name", "", "named queue to serve (com.openfaas.queue); empty: the default queue"
    )
    nats_durable: str = setting(
        "nats_durable",
        "",
        "durable consumer the replicas share (empty: faas-workers, or NAME-workers for a"
        " queue_name)",
    )
    max_inflight: int = setting(
        "max_inflight", 1, "invocations running at once in this worker", int_in(1, 100_000)
    )
    prefetch: int | None = setting(
        "prefetch",
        None,
        "messages taken ahead of free slots, so a freed slot starts its next call at once "
        "(held in progress; auto: max_inflight/4, at most 64)",
        prefetch_parse,
        shown="auto",
    )
    ack_wait: float = setting(
        "ack_wait",
        30.0,
        "JetStream redelivers a message not acknowledged or touched by then",
        duration_at_least("1s"),
        shown="30s",
    )
    max_event_age: float = setting(
        "max_event_age",
        0.0,
        "a call older than this (since it was due) is not invoked: dead letter 'expired' "
        "(0: off; X-Max-Age and the annotation ferry.max_age may set less)",
        duration,
        shown="0s",
    )
    max_held_answer_bytes: int = setting(
        "max_held_answer_bytes",
        DEFAULT_MAX_HELD_ANSWER_BYTES,
        "bytes of function answers held while their callbacks are delivered; past it no new "
        "call starts until some are delivered",
        int_in(MIN_HELD_ANSWER_BYTES),
    )
    gateway: GatewaySettings = group(GatewaySettings)
    retry: RetrySettings = group(RetrySettings)
    callbacks: CallbackSettings = group(CallbackSettings)
    ledger: CallLedgerSettings = group(CallLedgerSettings)
    runtime: RuntimeSettings = group(RuntimeSettings)

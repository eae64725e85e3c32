"""Everything the queue worker reads from its environment, in one typed object."""

from __future__ import annotations

from dataclasses import dataclass

from asyncq.settings import QueueNatsSettings
from connectors.core.breaker import MAX_OPEN_FOR_SECONDS as MAX_OPEN_FOR
from connectors.core.breaker import BreakerSettings
from connectors.core.config import CallbackSettings, GatewaySettings, RetrySettings, RuntimeSettings
from connectors.core.settings import (
    choice,
    duration,
    duration_at_least,
    group,
    int_in,
    parse_bool,
    positive_duration,
    setting,
)
from ledger.settings import CallLedgerSettings

DEFAULT_MAX_HELD_ANSWER_BYTES = 64 * 1024 * 1024
MIN_HELD_ANSWER_BYTES = 64 * 1024
FAIR = "fair"
STATIC = "static"


def scaling_mode_parse(text: str) -> str:
    """`fair` (the default) or `static`; OpenFaaS Pro's `function` is fair mode here."""
    value: str = choice(FAIR, STATIC, "function")(text)
    return STATIC if value == STATIC else FAIR


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
        "(held in progress; auto: max_inflight/4, at most 64; fair mode: in all, at most a "
        "quarter of a function's limit each)",
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
    scaling_mode: str = setting(
        "scaling_mode",
        FAIR,
        "fair: free slots go to the functions with waiting calls in turn, each with its own "
        "JetStream consumer and limit (OpenFaaS Pro's function mode); static: one FIFO consumer "
        "for the whole queue",
        scaling_mode_parse,
        aliases=("mode",),
    )
    limiter_enabled: bool = setting(
        "limiter_enabled",
        True,
        "fair mode: an adaptive concurrency limit per function, cut when it answers 429 (or 503 "
        "with Retry-After), grown while calls succeed",
        parse_bool,
    )
    consumer_inactive_threshold: float = setting(
        "consumer_inactive_threshold",
        30.0,
        "fair mode: a function's consumer (and the worker's lane for it) is removed once idle "
        "this long",
        positive_duration,
        shown="30s",
    )
    fair_sort_after: float = setting(
        "fair_sort_after",
        2.0,
        "fair mode: calls on the plain subject (OpenFaaS gateways) run in arrival order while "
        "that backlog would start within this time at the worker's measured rate; a longer "
        "backlog, or one with several functions, is sorted per function (0s: whenever calls "
        "wait)",
        duration,
        shown="2s",
    )
    consumer_pull_max_messages: int = setting(
        "consumer_pull_max_messages",
        0,
        "fair mode: most messages asked of one function's consumer in one pull request "
        "(0: as many as there are free slots)",
        int_in(0, 10_000),
    )
    breaker_enabled: bool = setting(
        "breaker_enabled",
        True,
        "fair mode: a circuit breaker per function; while open (the function down) its calls "
        "stay queued, unattempted",
        parse_bool,
    )
    breaker_failures: int = setting(
        "breaker_failures",
        5,
        "fair mode: consecutive availability failures (refused, reset, timed out, 502/503/504) "
        "that open a function's breaker (annotation ferry.breaker.failures)",
        int_in(1, 1000),
    )
    breaker_open_for: float = setting(
        "breaker_open_for",
        60.0,
        "fair mode: how long a breaker stays open before one probe call; doubled while probes "
        "fail, up to 10m (annotation ferry.breaker.open_for)",
        positive_duration,
        shown="60s",
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

    def breaker_settings(self) -> BreakerSettings | None:
        if not self.breaker_enabled:
            return None
        return BreakerSettings(self.breaker_failures, min(self.breaker_open_for, MAX_OPEN_FOR))

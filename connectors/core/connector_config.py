"""Settings every connector shares (topic map, invocation style, concurrency)."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.core.breaker import MAX_OPEN_FOR_SECONDS, BreakerSettings
from connectors.core.header_values import printable
from connectors.core.settings import (
    connect_or_interval,
    http_url_or_empty,
    int_in,
    parse_bool,
    positive_duration,
    setting,
)
from connectors.core.targets import is_label, shorten


def _namespace(text: str) -> str:
    """A namespace is a DNS-1123 label, as the gateway's own are (it goes into a URL)."""
    value = text.strip()
    if value and not is_label(value):
        raise ValueError(f"{shorten(value)} is not a DNS-1123 label (a-z, 0-9, '-', at most 63)")
    return value


def _header_value(text: str) -> str:
    """A value every call sends as a header: refused here, once, instead of failing each call
    unsent (a header cannot carry a line break, another control character or non-UTF-8)."""
    if not printable(text):
        raise ValueError("holds a line break, another control character or text that is not UTF-8")
    return text


def _callback_url(text: str) -> str:
    return _header_value(http_url_or_empty(text))


@dataclass(frozen=True)
class ConnectorSettings:
    rebuild_interval: float = setting(
        "rebuild_interval",
        10.0,
        "how often the topic map is re-read from the gateway",
        connect_or_interval,
        aliases=("rebuild_timeout",),
        shown="10s",
    )
    topic_delimiter: str = setting(
        "topic_delimiter", ",", "separator between topics in a function's topic annotation"
    )
    namespace: str = setting(
        "namespace",
        "",
        "only functions of this namespace (empty: every namespace)",
        _namespace,
    )
    asynchronous_invocation: bool = setting(
        "asynchronous_invocation", False, "invoke via /async-function (queued)", parse_bool
    )
    callback_url: str = setting(
        "callback_url", "", "X-Callback-Url for asynchronous invocations", _callback_url
    )
    content_type: str = setting(
        "content_type", "text/plain", "Content-Type sent to functions", _header_value
    )
    print_response: bool = setting("print_response", True, "log each function's status", parse_bool)
    max_inflight: int = setting(
        "max_inflight", 64, "invocations running at once in this connector", int_in(1, 100_000)
    )
    limiter_enabled: bool = setting(
        "limiter_enabled",
        True,
        "an adaptive concurrency limit per function, cut when it answers 429 (or 503 with "
        "Retry-After), grown while calls succeed; a 429 it causes uses no attempt",
        parse_bool,
    )
    breaker_enabled: bool = setting(
        "breaker_enabled",
        True,
        "a circuit breaker per function; while open (the function down) its calls wait in "
        "line, unattempted (Kafka: the record's lane waits; SQS: in process, kept invisible)",
        parse_bool,
    )
    breaker_failures: int = setting(
        "breaker_failures",
        5,
        "consecutive availability failures (refused, reset, timed out, 502/503/504) that open "
        "a function's breaker (annotation ferry.breaker.failures)",
        int_in(1, 1000),
    )
    breaker_open_for: float = setting(
        "breaker_open_for",
        60.0,
        "how long a breaker stays open before one probe call; doubled while probes fail, up "
        "to 10m (annotation ferry.breaker.open_for)",
        positive_duration,
        shown="60s",
    )

    def breaker_settings(self) -> BreakerSettings | None:
        if not self.breaker_enabled:
            return None
        open_for = min(self.breaker_open_for, MAX_OPEN_FOR_SECONDS)
        return BreakerSettings(self.breaker_failures, open_for)

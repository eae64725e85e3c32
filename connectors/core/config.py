"""Setting groups shared by every ferry process (gateway, retries, callbacks, runtime).

Each process's own config dataclass nests the groups it needs, so the variable names and
defaults are written once and `--help` lists them the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from connectors.core.hosts import allowed_hosts, listen_address
from connectors.core.settings import (
    body_bytes,
    choice,
    duration,
    exchange_timeout,
    http_url,
    int_in,
    parse_bool,
    port,
    setting,
    status_codes,
)

DEFAULT_RETRY_CODES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def max_response_bytes_setting() -> int:
    """The one declaration of `max_response_bytes`, for every process that reads an answer."""
    return setting(  # type: ignore[no-any-return]
        "max_response_bytes",
        DEFAULT_MAX_RESPONSE_BYTES,
        "largest function answer read (bytes); a larger one is a final failure, not retried",
        body_bytes,
    )


def _gateway_from_parts(environ: Mapping[str, str]) -> str | None:
    host = environ.get("faas_gateway_address", "").strip()
    gw_port = environ.get("faas_gateway_port", "").strip()
    if not host and not gw_port:
        return None
    return f"http://{host or 'gateway'}:{gw_port or '8080'}"


@dataclass(frozen=True)
class GatewaySettings:
    """Where functions are invoked and how."""

    gateway_url: str = setting(
        "gateway_url",
        "http://gateway:8080",
        "OpenFaaS-compatible gateway that serves /function/{name}",
        http_url,
        fallback=_gateway_from_parts,
        fallback_help="faas_gateway_address [gateway] and faas_gateway_port [8080]",
        fallback_reads=("faas_gateway_address", "faas_gateway_port"),
    )
    upstream_timeout: float = setting(
        "upstream_timeout",
        60.0,
        "bound on waiting for one function call (the OpenFaaS chart's 1m)",
        exchange_timeout,
        shown="1m",
    )
    max_response_bytes: int = max_response_bytes_setting()
    basic_auth: bool = setting(
        "basic_auth",
        False,
        "read the gateway's function list with its admin credentials (from secret_mount_path);"
        " never sent to a function",
        parse_bool,
    )
    secret_mount_path: str = setting(
        "secret_mount_path",
        "/var/openfaas/secrets",
        "folder holding basic-auth-user and basic-auth-password",
    )
    print_response_body: bool = setting(
        "print_response_body", False, "log each function's response body", parse_bool
    )
    print_request_body: bool = setting(
        "print_request_body",
        False,
        "log the body sent with each invocation (the first 4 KiB)",
        parse_bool,
        aliases=("faas_print_body",),
    )


@dataclass(frozen=True)
class RetrySettings:
    """Process-wide retry policy; function annotations override it per function."""

    max_retry_attempts: int = setting(
        "max_retry_attempts", 10, "attempts per message, the first included", int_in(1)
    )
    initial_retry_wait: float = setting(
        "initial_retry_wait", 10.0, "first back-off (full jitter, doubling)", duration, shown="10s"
    )
    max_retry_wait: float = setting(
        "max_retry_wait", 120.0, "longest back-off between attempts", duration, shown="2m"
    )
    retry_http_codes: frozenset[int] = setting(
        "retry_http_codes",
        DEFAULT_RETRY_CODES,
        "function statuses that are retried",
        status_codes,
        shown="408,429,500,502,503,504",
    )
    retry_on_timeout: bool = setting(
        "retry_on_timeout",
        False,
        "invoke again when upstream_timeout ran out (the function may still be running);"
        " a 502/504 from the gateway follows retry_http_codes either way",
        parse_bool,
    )

    def __post_init__(self) -> None:
        if self.initial_retry_wait > self.max_retry_wait:
            raise ValueError(
                "initial_retry_wait must not be longer than max_retry_wait "
                f"({self.initial_retry_wait:g}s > {self.max_retry_wait:g}s)"
            )


@dataclass(frozen=True)
class CallbackSettings:
    """Who may receive callbacks and how they are signed and retried."""

    callback_allowed_hosts: tuple[str, ...] = setting(
        "callback_allowed_hosts",
        (),
        "hosts (a.example, *.example) or CIDRs a callback may reach even if private",
        allowed_hosts,
    )
    callback_allow_private: bool = setting(
        "callback_allow_private",
        False,
        "allow callbacks to loopback, private and link-local addresses",
        parse_bool,
    )
    callback_signing_secret: str = setting(
        "callback_signing_secret",
        "",
        "HMAC-SHA256 key for X-Ferry-Signature (empty: unsigned)",
        secret=True,
    )
    callback_timeout: float = setting(
        "callback_timeout", 10.0, "bound on one callback POST", exchange_timeout, shown="10s"
    )
    callback_max_attempts: int = setting(
        "callback_max_attempts", 5, "attempts per callback", int_in(1, 100)
    )
    callback_max_wait: float = setting(
        "callback_max_wait",
        30.0,
        "longest back-off between callback attempts",
        duration,
        shown="30s",
    )


@dataclass(frozen=True)
class RuntimeSettings:
    """Process concerns: health port, logging, drain."""

    health_port: int = setting(
        "health_port", 8081, "port of /healthz, /readyz and /metrics (0: any free)", port
    )
    health_host: str = setting(
        "health_host", "0.0.0.0", "address the health server binds", listen_address
    )
    log_encoding: str = setting(
        "log_encoding", "console", "console or json", choice("console", "json")
    )
    write_debug: bool = setting(
        "write_debug", False, "log at debug level", parse_bool, aliases=("debug",)
    )
    graceful_timeout: float = setting(
        "graceful_timeout",
        30.0,
        "on SIGTERM, how long in-flight work may finish",
        duration,
        shown="30s",
    )

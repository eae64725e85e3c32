"""Everything `ferry gateway` reads from its environment, in one typed object."""

from __future__ import annotations

from dataclasses import dataclass

from asyncq.settings import QueueNatsSettings
from connectors.core.config import RuntimeSettings, max_response_bytes_setting
from connectors.core.hosts import allowed_hosts, listen_address
from connectors.core.settings import (
    body_bytes,
    choice,
    connect_or_interval,
    exchange_timeout,
    group,
    http_url_or_empty,
    parse_bool,
    port,
    setting,
)
from ledger.settings import CallLedgerSettings

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_READ_TIMEOUT = 65.0  # seconds, the OpenFaaS chart's gateway readTimeout


@dataclass(frozen=True)
class GatewayConfig:
    nats: QueueNatsSettings = group(QueueNatsSettings)
    port: int = setting("port", 8080, "port of the front door and proxy (0: any free)", port)
    listen_host: str = setting(
        "listen_host", "0.0.0.0", "address the front door binds", listen_address
    )
    upstream_url: str = setting(
        "upstream_url",
        "",
        "proxy mode: OpenFaaS gateway that serves everything but /async-function",
        http_url_or_empty,
    )
    functions_file: str = setting(
        "functions_file", "", "standalone mode: YAML file listing the functions and their URLs"
    )
    max_body_bytes: int = setting(
        "max_body_bytes",
        DEFAULT_MAX_BODY_BYTES,
        "largest async request body (413 above); bodies too large for one NATS message"
        " go to the large_body_bucket object store",
        body_bytes,
    )
    refresh_interval: float = setting(
        "refresh_interval",
        2.0,
        "how often the function list is re-read (file or upstream)",
        connect_or_interval,
        shown="2s",
    )
    publish_timeout: float = setting(
        "publish_timeout",
        5.0,
        "how long to wait for JetStream to confirm a queued call (503 after)",
        exchange_timeout,
        shown="5s",
    )
    read_timeout: float = setting(
        "read_timeout",
        DEFAULT_READ_TIMEOUT,
        "most time a whole request (head and body) may take to arrive (408 after)",
        exchange_timeout,
        shown="65s",
    )
    upstream_timeout: float = setting(
        "upstream_timeout",
        60.0,
        "bound on a proxied call's wait for the upstream or function (502 past it)",
        exchange_timeout,
        shown="60s",
    )
    max_response_bytes: int = max_response_bytes_setting()
    basic_auth: bool = setting(
        "basic_auth",
        False,
        "proxy mode: read the function list with basic auth (from secret_mount_path); "
        "either mode: require the same credentials on the call routes (standalone mode: on "
        "every /system route)",
        parse_bool,
    )
    secret_mount_path: str = setting(
        "secret_mount_path",
        "/var/openfaas/secrets",
        "folder holding basic-auth-user and basic-auth-password",
    )
    callback_allowed_hosts: tuple[str, ...] = setting(
        "callback_allowed_hosts",
        (),
        "hosts (a.example, *.example) or CIDRs an X-Callback-Url may name even if private",
        allowed_hosts,
    )
    callback_allow_private: bool = setting(
        "callback_allow_private",
        False,
        "accept X-Callback-Url on loopback, private and link-local addresses",
        parse_bool,
    )
    console_enabled: str = setting(
        "console_enabled",
        "auto",
        "serve the web console at /system/console/: auto (only when basic_auth=true, behind its "
        "credentials), true (also without credentials), false",
        choice("auto", "true", "false"),
    )
    ledger: CallLedgerSettings = group(CallLedgerSettings)
    runtime: RuntimeSettings = group(RuntimeSettings)

    def __post_init__(self) -> None:
        if bool(self.upstream_url) == bool(self.functions_file):
            raise ValueError(
                "set exactly one of upstream_url (proxy mode) or functions_file (standalone mode)"
            )

    @property
    def standalone(self) -> bool:
        return bool(self.functions_file)

"""The one NATS settings group: servers, credentials from files, TLS, pings, replicas.

Every process and shell command that talks to NATS nests `NatsSettings` (the cron connector
nests `OptionalNatsSettings`, where NATS is optional), so `--help`, the defaults and the
checks are the same everywhere. Secrets are never held here, only the paths of the files
(mounted Kubernetes secrets) that hold them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from connectors.core.settings import connect_or_interval, int_in, setting

SCHEMES = ("nats", "tls", "ws", "wss")
DEFAULT_NATS_URL = "nats://nats:4222"
MAX_REPLICAS = 5


def redact(url: str) -> str:
    """`url` with any user information replaced, so it can be logged or printed."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}://{netloc}{slash}{path}"


def parse_servers(text: str) -> str:
    """A comma-separated server list, each checked; bare `host:port` means `nats://host:port`."""
    servers: list[str] = []
    for part in text.split(","):
        server = part.strip()
        if not server:
            continue
        if "://" not in server:
            server = f"nats://{server}"
        try:
            parts = urlsplit(server)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ValueError(f"{redact(server)}: not a valid server URL") from None
        if parts.scheme not in SCHEMES:
            raise ValueError(f"{redact(server)}: expected nats://, tls://, ws:// or wss://")
        if not parts.hostname:
            raise ValueError(f"{redact(server)}: no host")
        servers.append(server)
    if not servers:
        raise ValueError("expected at least one server")
    if len({s.startswith(("ws://", "wss://")) for s in servers}) > 1:
        raise ValueError("websocket (ws://, wss://) and other servers cannot be mixed")
    return ",".join(servers)


def parse_servers_or_empty(text: str) -> str:
    return parse_servers(text) if text.strip() else ""


def file_path(text: str) -> str:
    """A path, read when connecting (so manifests can be checked where the secret is absent)."""
    return text.strip()


def _servers_from_parts(environ: Mapping[str, str]) -> str | None:
    """OpenFaaS's variables: faas_nats_address/faas_nats_port, else Pro's nats_host/nats_port."""
    for host_name, port_name in (
        ("faas_nats_address", "faas_nats_port"),
        ("nats_host", "nats_port"),
    ):
        host = environ.get(host_name, "").strip()
        port = environ.get(port_name, "").strip()
        if host or port:
            return f"nats://{host or 'nats'}:{port or '4222'}"
    return None


@dataclass(frozen=True)
class NatsSettings:
    """How to reach NATS; read by the queue worker, the front door and the shell commands."""

    nats_url: str = setting(
        "nats_url",
        DEFAULT_NATS_URL,
        "NATS servers with JetStream, comma-separated (nats://, tls://, ws://, wss://);"
        " reconnects may go to any server of the cluster",
        parse_servers,
        fallback=_servers_from_parts,
        fallback_help="faas_nats_address [nats] and faas_nats_port [4222],"
        " else nats_host and nats_port",
        fallback_reads=("faas_nats_address", "faas_nats_port", "nats_host", "nats_port"),
        secret=True,  # a URL may carry a user and password
    )
    nats_connect_timeout: float = setting(
        "nats_connect_timeout",
        5.0,
        "bound on the first connection at start-up",
        connect_or_interval,
        shown="5s",
    )
    nats_ping_interval: float = setting(
        "nats_ping_interval",
        10.0,
        "ping the server this often; two unanswered: reconnect, and /readyz is false meanwhile",
        connect_or_interval,
        shown="10s",
    )
    nats_stream_replicas: int = setting(
        "nats_stream_replicas",
        1,
        "replicas of every stream and key-value bucket ferry creates (at most the servers)",
        int_in(1, MAX_REPLICAS),
    )
    nats_token_file: str = setting(
        "nats_token_file", "", "file holding the token to authenticate with", file_path
    )
    nats_user_file: str = setting(
        "nats_user_file", "", "file holding the user name (with nats_password_file)", file_path
    )
    nats_password_file: str = setting(
        "nats_password_file", "", "file holding the user's password", file_path
    )
    nats_nkey_seed_file: str = setting(
        "nats_nkey_seed_file", "", "file holding an NKey seed (SU...)", file_path
    )
    nats_credentials_file: str = setting(
        "nats_credentials_file",
        "",
        "decentralized-auth .creds file (user JWT and NKey seed)",
        file_path,
    )
    nats_tls_ca_file: str = setting(
        "nats_tls_ca_file",
        "",
        "PEM file of the CA that signed the servers' certificates (empty: the system's)",
        file_path,
    )
    nats_tls_cert_file: str = setting(
        "nats_tls_cert_file",
        "",
        "PEM client certificate, for servers that verify clients (with nats_tls_key_file)",
        file_path,
    )
    nats_tls_key_file: str = setting(
        "nats_tls_key_file", "", "PEM private key of the client certificate", file_path
    )

    def __post_init__(self) -> None:
        if bool(self.nats_user_file) != bool(self.nats_password_file):
            raise ValueError("nats_user_file and nats_password_file are set together")
        if bool(self.nats_tls_cert_file) != bool(self.nats_tls_key_file):
            raise ValueError("nats_tls_cert_file and nats_tls_key_file are set together")
        methods = [name for name, path in self.auth_files() if path]
        if len(methods) > 1:
            raise ValueError(f"set only one way to authenticate: {', '.join(methods)}")

    def auth_files(self) -> list[tuple[str, str]]:
        """The authentication settings, by variable name (empty path: unset)."""
        return [
            ("nats_token_file", self.nats_token_file),
            ("nats_user_file", self.nats_user_file),
            ("nats_nkey_seed_file", self.nats_nkey_seed_file),
            ("nats_credentials_file", self.nats_credentials_file),
        ]

    @property
    def servers(self) -> list[str]:
        return [s for s in self.nats_url.split(",") if s]

    @property
    def shown_servers(self) -> str:
        """The server list as it may be logged: no user information."""
        return ",".join(redact(s) for s in self.servers)


@dataclass(frozen=True)
class OptionalNatsSettings(NatsSettings):
    """The same settings for a process that can also run without NATS (empty `nats_url`)."""

    nats_url: str = setting(
        "nats_url",
        "",
        "NATS servers with JetStream, comma-separated (nats://, tls://, ws://, wss://);"
        " empty: no NATS",
        parse_servers_or_empty,
        secret=True,
    )

    @property
    def enabled(self) -> bool:
        return bool(self.nats_url)

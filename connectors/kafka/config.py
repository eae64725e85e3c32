"""Everything `ferry kafka-connector` reads from its environment, in one typed object.

The Kafka-specific settings sit beside the groups every connector shares (topic map,
gateway, retries, runtime), so `--help` lists them all and names stay the same across
sources. Group timing (`session_timeout`, `heartbeat_interval`) is settable because a
rebalance takes about half the session timeout: short values make tests and demos quick.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.core.config import GatewaySettings, RetrySettings, RuntimeSettings
from connectors.core.connector_config import ConnectorSettings
from connectors.core.settings import (
    choice,
    connect_or_interval,
    csv,
    duration,
    duration_at_least,
    exchange_timeout,
    group,
    int_in,
    parse_bool,
    setting,
)

ORDERINGS = ("partition", "key", "none")
SASL_MECHANISMS = ("none", "plain", "scram-sha-256", "scram-sha-512")


def _hosts(text: str) -> tuple[str, ...]:
    hosts = csv(text)
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"{host!r} is not host:port")
    return hosts


def _topics(text: str) -> tuple[str, ...]:
    topics = csv(text)
    if not topics:
        raise ValueError("name at least one topic")
    return topics


@dataclass(frozen=True)
class KafkaSettings:
    """Where to consume from and how records are scheduled and committed."""

    broker_hosts: tuple[str, ...] = setting(
        "broker_hosts",
        ("kafka:9092",),
        "Kafka bootstrap servers, host:port comma list",
        _hosts,
        aliases=("broker_host",),
    )
    topics: tuple[str, ...] = setting(
        "topics", (), "topics to consume, comma list (required)", _topics
    )
    group: str = setting("group", "faas-group-1", "consumer group id")
    initial_offset: str = setting(
        "initial_offset",
        "oldest",
        "where a group without a committed offset starts: oldest or newest",
        choice("oldest", "newest"),
    )
    ordering: str = setting(
        "ordering",
        "partition",
        "partition (one record at a time per partition), key (serial per key), none",
        choice(*ORDERINGS),
    )
    dead_letter_topic: str = setting(
        "dead_letter_topic", "", "topic for records a function failed on (empty: log them)"
    )
    response_topic: str = setting(
        "response_topic", "", "topic that receives each function's response (empty: none)"
    )
    max_uncommitted: int = setting(
        "max_uncommitted",
        1000,
        "records held uncommitted per partition before that partition is paused",
        int_in(1, 1_000_000),
    )
    commit_interval: float = setting(
        "commit_interval",
        1.0,
        "how often finished offsets are committed",
        connect_or_interval,
        shown="1s",
    )
    revoke_timeout: float = setting(
        "revoke_timeout",
        10.0,
        "on a rebalance, how long in-flight records of lost partitions may finish",
        duration,
        shown="10s",
    )
    startup_timeout: float = setting(
        "startup_timeout",
        15.0,
        "bound on reaching the brokers at start-up",
        connect_or_interval,
        shown="15s",
    )
    session_timeout: float = setting(
        "session_timeout",
        10.0,
        "group session timeout (a rebalance takes about half of it)",
        duration_at_least("1s"),
        shown="10s",
    )
    heartbeat_interval: float = setting(
        "heartbeat_interval",
        3.0,
        "group heartbeat interval (under a third of session_timeout)",
        connect_or_interval,
        shown="3s",
    )

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError("topics: name at least one topic to consume")
        if self.heartbeat_interval >= self.session_timeout:
            raise ValueError(
                "heartbeat_interval must be shorter than session_timeout "
                f"({self.heartbeat_interval:g}s >= {self.session_timeout:g}s)"
            )


@dataclass(frozen=True)
class KafkaSecuritySettings:
    """SASL and TLS towards the brokers; secrets are read from files, never from the env."""

    sasl_mechanism: str = setting(
        "sasl_mechanism",
        "none",
        "none, plain, scram-sha-256 or scram-sha-512",
        choice(*SASL_MECHANISMS),
    )
    sasl_username_file: str = setting("sasl_username_file", "", "file holding the SASL user name")
    sasl_password_file: str = setting("sasl_password_file", "", "file holding the SASL password")
    tls: bool = setting("tls", False, "connect to the brokers with TLS", parse_bool)
    tls_ca_file: str = setting("tls_ca_file", "", "CA bundle that signed the brokers' certificates")
    tls_cert_file: str = setting("tls_cert_file", "", "client certificate (mutual TLS)")
    tls_key_file: str = setting("tls_key_file", "", "client private key (mutual TLS)")

    def __post_init__(self) -> None:
        if self.sasl_mechanism != "none" and not (
            self.sasl_username_file and self.sasl_password_file
        ):
            raise ValueError(
                f"sasl_mechanism={self.sasl_mechanism} needs sasl_username_file "
                "and sasl_password_file"
            )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if (self.tls_ca_file or self.tls_cert_file) and not self.tls:
            raise ValueError("tls_ca_file, tls_cert_file and tls_key_file need tls=true")


@dataclass(frozen=True)
class KafkaGatewaySettings(GatewaySettings):
    """The shared gateway settings with the OpenFaaS kafka-connector chart's longer wait."""

    upstream_timeout: float = setting(
        "upstream_timeout",
        120.0,
        "bound on waiting for one function call (the OpenFaaS kafka-connector chart's 2m)",
        exchange_timeout,
        shown="2m",
    )


@dataclass(frozen=True)
class KafkaConnectorConfig:
    kafka: KafkaSettings = group(KafkaSettings)
    security: KafkaSecuritySettings = group(KafkaSecuritySettings)
    connector: ConnectorSettings = group(ConnectorSettings)
    gateway: GatewaySettings = group(KafkaGatewaySettings)
    retry: RetrySettings = group(RetrySettings)
    runtime: RuntimeSettings = group(RuntimeSettings)

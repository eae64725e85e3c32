"""The NATS settings every process reads: server lists, OpenFaaS fallbacks, checks, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.core.errors import ConfigError
from connectors.core.settings import load_settings
from connectors.cron.config import CronConnectorConfig
from connectors.jetstream.settings import NatsSettings, redact
from gateway.config import GatewayConfig
from queue_worker.config import QueueWorkerConfig


def servers(**env: str) -> list[str]:
    return load_settings(NatsSettings, env).servers


def test_a_comma_separated_list_is_the_seed_list_of_every_scheme() -> None:
    assert servers(nats_url="nats://n1:4222, tls://n2:4222 ,n3:4222") == [
        "nats://n1:4222",
        "tls://n2:4222",
        "nats://n3:4222",
    ]
    assert servers(nats_url="ws://a:8080,wss://b:443") == ["ws://a:8080", "wss://b:443"]


def test_user_information_in_a_url_is_kept_for_connecting_but_never_shown() -> None:
    settings = load_settings(NatsSettings, {"nats_url": "nats://me:pw@n1:4222,nats://tok@n2"})
    assert settings.servers == ["nats://me:pw@n1:4222", "nats://tok@n2"]
    assert settings.shown_servers == "nats://***@n1:4222,nats://***@n2"
    assert redact("tls://a:b@host:1/path@x") == "tls://***@host:1/path@x"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["nats://nats:4222"]),
        ({"faas_nats_address": "queue", "faas_nats_port": "4223"}, ["nats://queue:4223"]),
        ({"nats_host": "pro-nats", "nats_port": "4224"}, ["nats://pro-nats:4224"]),
        (
            {"faas_nats_address": "first", "nats_host": "second"},
            ["nats://first:4222"],
        ),
        ({"nats_url": "nats://url:1", "nats_host": "ignored"}, ["nats://url:1"]),
    ],
)
def test_openfaas_variables_are_fallbacks_in_order(
    env: dict[str, str], expected: list[str]
) -> None:
    assert servers(**env) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"nats_url": "http://n1:4222"}, "expected nats://, tls://, ws:// or wss://"),
        ({"nats_url": "nats://n1:4222,ws://n2:80"}, "cannot be mixed"),
        ({"nats_url": "nats://n1:port"}, "not a valid server URL"),
        ({"nats_url": ",,"}, "at least one server"),
        ({"nats_stream_replicas": "0"}, "nats_stream_replicas='0': must be between 1 and 5"),
        ({"nats_stream_replicas": "6"}, "must be between 1 and 5"),
        ({"nats_ping_interval": "0s"}, "nats_ping_interval='0s': must be at least 100ms"),
        ({"nats_connect_timeout": "0"}, "nats_connect_timeout='0': must be at least 100ms"),
    ],
)
def test_a_bad_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(NatsSettings, env)


def test_a_bad_url_with_a_password_is_reported_without_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(NatsSettings, {"nats_url": "http://me:hunter2@n1"})
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).startswith("nats_url=<hidden>: http://***@n1")


def test_pairs_go_together_and_only_one_way_to_authenticate(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("x")
    with pytest.raises(ConfigError, match="nats_user_file and nats_password_file"):
        load_settings(NatsSettings, {"nats_user_file": str(secret)})
    with pytest.raises(ConfigError, match="nats_tls_cert_file and nats_tls_key_file"):
        load_settings(NatsSettings, {"nats_tls_key_file": str(secret)})
    with pytest.raises(ConfigError, match="nats_token_file, nats_nkey_seed_file"):
        load_settings(
            NatsSettings, {"nats_token_file": str(secret), "nats_nkey_seed_file": str(secret)}
        )


def test_every_nats_process_reads_the_same_settings() -> None:
    names = {
        "nats_url",
        "nats_stream_replicas",
        "nats_token_file",
        "nats_user_file",
        "nats_password_file",
        "nats_nkey_seed_file",
        "nats_credentials_file",
        "nats_tls_ca_file",
        "nats_tls_cert_file",
        "nats_tls_key_file",
        "nats_ping_interval",
        "nats_connect_timeout",
    }
    from connectors.core.settings import env_names

    for config in (QueueWorkerConfig, GatewayConfig, CronConnectorConfig):
        assert names <= env_names(config), config


def test_the_cron_connector_runs_without_nats_unless_a_server_list_is_given() -> None:
    config = load_settings(CronConnectorConfig, {})
    assert not config.nats.enabled
    config = load_settings(CronConnectorConfig, {"nats_url": "n1:4222,n2:4222"})
    assert config.nats.servers == ["nats://n1:4222", "nats://n2:4222"]


@pytest.mark.parametrize(
    "command", ["queue-worker", "gateway", "cron-connector", "publish", "dead-letters"]
)
def test_every_nats_command_lists_the_nats_settings_in_its_help(command: str) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "ferry", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for name, default in (
        ("nats_url", ""),
        ("nats_stream_replicas", "[1]"),
        ("nats_ping_interval", "[10s]"),
        ("nats_connect_timeout", "[5s]"),
        ("nats_token_file", ""),
        ("nats_user_file", ""),
        ("nats_password_file", ""),
        ("nats_nkey_seed_file", ""),
        ("nats_credentials_file", ""),
        ("nats_tls_ca_file", ""),
        ("nats_tls_cert_file", ""),
        ("nats_tls_key_file", ""),
    ):
        [line] = [line for line in out.splitlines() if line.strip().startswith(name + " ")]
        assert default in line, line


def test_the_delayed_stream_follows_nats_stream_unless_named() -> None:
    assert load_settings(QueueWorkerConfig, {}).nats.delayed_stream_name == "faas-request-delayed"
    named = load_settings(QueueWorkerConfig, {"nats_stream": "jobs"}).nats
    assert named.delayed_stream_name == "jobs-delayed"
    own = load_settings(QueueWorkerConfig, {"delayed_stream": "later"}).nats
    assert own.delayed_stream_name == "later"
    with pytest.raises(ConfigError, match="delayed_stream"):
        load_settings(QueueWorkerConfig, {"delayed_stream": "a.b"})

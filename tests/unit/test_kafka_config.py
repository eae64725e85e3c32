"""Kafka settings: bad values name their variable; security settings map onto aiokafka."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.core.errors import ConfigError
from connectors.core.settings import load_settings
from connectors.kafka.client import security_options
from connectors.kafka.config import KafkaConnectorConfig, KafkaSecuritySettings


def load(**env: str) -> KafkaConnectorConfig:
    return load_settings(KafkaConnectorConfig, {"topics": "orders", **env})


def test_defaults_follow_the_openfaas_connector() -> None:
    config = load()
    assert config.kafka.group == "faas-group-1"
    assert config.kafka.initial_offset == "oldest"
    assert config.kafka.ordering == "partition"
    assert config.kafka.topics == ("orders",)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"topics": ","}, "topics"),
        ({"initial_offset": "middle"}, "initial_offset"),
        ({"ordering": "sorted"}, "ordering"),
        ({"broker_hosts": "kafka"}, "broker_hosts"),
        ({"session_timeout": "1s", "heartbeat_interval": "2s"}, "heartbeat_interval"),
        ({"sasl_mechanism": "plain"}, "sasl_username_file"),
        ({"tls_cert_file": "/c.pem"}, "tls_key_file"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load(**env)


def test_plaintext_by_default() -> None:
    assert security_options(KafkaSecuritySettings()) == {"security_protocol": "PLAINTEXT"}


def test_sasl_credentials_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "user").write_text("alice\n")
    (tmp_path / "password").write_text("s3cret\n")
    settings = KafkaSecuritySettings(
        sasl_mechanism="scram-sha-512",
        sasl_username_file=str(tmp_path / "user"),
        sasl_password_file=str(tmp_path / "password"),
        tls=True,
    )
    options = security_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "alice"
    assert options["sasl_plain_password"] == "s3cret"
    assert options["ssl_context"] is not None


def test_an_unreadable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    settings = KafkaSecuritySettings(
        sasl_mechanism="plain",
        sasl_username_file=str(tmp_path / "missing"),
        sasl_password_file=str(tmp_path / "missing"),
    )
    with pytest.raises(ConfigError, match="sasl_username_file"):
        security_options(settings)

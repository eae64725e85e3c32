"""Durations in Go syntax, and typed settings read from the environment."""

from __future__ import annotations

import pytest

from connectors.core.config import GatewaySettings, RetrySettings
from connectors.core.durations import format_duration, parse_duration
from connectors.core.errors import ConfigError
from connectors.core.settings import describe_settings, load_settings
from queue_worker.config import QueueWorkerConfig


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("10", 10.0),
        ("0.25", 0.25),
        ("0", 0.0),
    ],
)
def test_go_durations_and_bare_seconds_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5 parsecs", "10x", "s", "-1s", "-3", "1m-2s"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_durations_format_for_help() -> None:
    assert [format_duration(s) for s in (0.5, 30, 120, 7200, 0)] == [
        "500ms",
        "30s",
        "2m",
        "2h",
        "0s",
    ]


def test_openfaas_address_and_port_build_the_urls() -> None:
    config = load_settings(
        QueueWorkerConfig,
        {"faas_nats_address": "nats.openfaas", "faas_gateway_port": "31112"},
    )
    assert config.nats.nats_url == "nats://nats.openfaas:4222"
    assert config.gateway.gateway_url == "http://gateway:31112"


def test_an_explicit_url_wins_over_address_and_port() -> None:
    config = load_settings(QueueWorkerConfig, {"nats_url": "nats://a:1", "faas_nats_address": "b"})
    assert config.nats.nats_url == "nats://a:1"


def test_faas_nats_channel_is_an_alias_of_nats_stream() -> None:
    config = load_settings(QueueWorkerConfig, {"faas_nats_channel": "legacy"})
    assert config.nats.nats_stream == "legacy"


def test_defaults_match_openfaas() -> None:
    config = load_settings(QueueWorkerConfig, {})
    assert config.max_inflight == 1
    assert config.ack_wait == 30
    assert config.retry.retry_http_codes == {408, 429, 500, 502, 503, 504}
    assert config.runtime.health_port == 8081
    assert config.nats.nats_stream == "faas-request"


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^max_retry_attempts='zero': expected a whole number"):
        load_settings(RetrySettings, {"max_retry_attempts": "zero"})


def test_inconsistent_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="initial_retry_wait must not be longer"):
        load_settings(RetrySettings, {"initial_retry_wait": "5m", "max_retry_wait": "1m"})


def test_secrets_are_not_echoed_in_errors() -> None:
    from connectors.core.config import CallbackSettings

    settings = load_settings(CallbackSettings, {"callback_signing_secret": "hunter2"})
    assert settings.callback_signing_secret == "hunter2"
    assert "hunter2" not in describe_settings(CallbackSettings)


def test_help_shows_each_variable_once_with_its_default() -> None:
    text = describe_settings(GatewaySettings)
    assert "upstream_timeout" in text and "[1m]" in text
    assert text.count("gateway_url ") == 1


def test_help_shows_the_floor_of_a_setting_that_has_one() -> None:
    lines = describe_settings(QueueWorkerConfig).splitlines()
    (ack_wait,) = [line for line in lines if line.strip().startswith("ack_wait ")]
    assert ack_wait.endswith("(at least 1s) [30s]")
    (ttl,) = [line for line in lines if line.strip().startswith("call_ledger_ttl ")]
    assert ttl.endswith("(at least 1m) [24h]")
    (attempts,) = [line for line in lines if line.strip().startswith("max_retry_attempts ")]
    assert "at least" not in attempts  # a count shows no floor


def test_rebuild_timeout_is_read_as_rebuild_interval() -> None:
    from connectors.cron.config import CronConnectorConfig

    config = load_settings(CronConnectorConfig, {"rebuild_timeout": "30s"})
    assert config.connector.rebuild_interval == 30.0

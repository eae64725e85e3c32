"""A connector's `content_type` and `callback_url` go out as headers with every call: a value
no header can carry is refused when the settings are read, naming the variable, instead of
failing every call unsent."""

from __future__ import annotations

import pytest

from connectors.core.errors import ConfigError
from connectors.core.settings import load_settings
from connectors.cron.config import CronConnectorConfig
from connectors.kafka.config import KafkaConnectorConfig
from connectors.sqs.config import SqsConnectorConfig

CONFIGS = [
    (KafkaConnectorConfig, {"topics": "orders"}),
    (SqsConnectorConfig, {"queue_url": "http://127.0.0.1:9/1/q"}),
    (CronConnectorConfig, {}),
]

# (settings are stripped at both ends, so these sit inside the value)
UNSENDABLE = [
    "text/plain\nX-Injected: 1",
    "text/plain\r\nX-Injected: 1",
    "text/\x1bplain",
    "text/plain\x7f;q=1",
    "text/plain\u2028;q=1",
    "text/plain\udcff",  # a byte that is not UTF-8, as os.environ reads it
]


@pytest.mark.parametrize(("config", "required"), CONFIGS)
@pytest.mark.parametrize("value", UNSENDABLE)
def test_a_content_type_no_header_can_carry_is_refused(
    config: type, required: dict[str, str], value: str
) -> None:
    with pytest.raises(ConfigError, match=r"^content_type=") as caught:
        load_settings(config, {**required, "content_type": value})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("config", "required"), CONFIGS)
@pytest.mark.parametrize("tail", ["\r\nX-Injected: 1", "\x00", "\udcff", "\x85/x"])
def test_a_callback_url_no_header_can_carry_is_refused(
    config: type, required: dict[str, str], tail: str
) -> None:
    with pytest.raises(ConfigError, match=r"^callback_url=") as caught:
        load_settings(config, {**required, "callback_url": "http://hooks.example/cb" + tail})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "value", ["application/json", "text/plain; charset=utf-8", "application/vnd.ä+json"]
)
def test_content_types_a_header_can_carry_are_kept_as_given(value: str) -> None:
    config = load_settings(KafkaConnectorConfig, {"topics": "orders", "content_type": value})
    assert config.connector.content_type == value


def test_a_callback_url_is_still_checked_as_a_url_and_kept() -> None:
    with pytest.raises(ConfigError, match=r"^callback_url="):
        load_settings(CronConnectorConfig, {"callback_url": "ftp://hooks.example/cb"})
    config = load_settings(CronConnectorConfig, {"callback_url": "https://hooks.example/cb/"})
    assert config.connector.callback_url == "https://hooks.example/cb"
    assert load_settings(CronConnectorConfig, {}).connector.callback_url == ""

"""Findings 9 and 10: settings that would make a process useless, or that it would misread,
are refused at start: one line on stderr naming the variable, exit status 2, no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from connectors.core.errors import ConfigError
from connectors.core.settings import load_settings
from queue_worker.config import QueueWorkerConfig
from tests.support.brokers import NatsServer
from tests.support.procs import run_to_exit

EXIT_CONFIG = 2


def _functions(tmp_path: Path, text: str) -> str:
    path = tmp_path / "functions.yml"
    path.write_text(text)
    return str(path)


def _secrets(tmp_path: Path, user: str, password: str) -> str:
    (tmp_path / "basic-auth-user").write_text(user)
    (tmp_path / "basic-auth-password").write_text(password)
    return str(tmp_path)


ONE_FUNCTION = "functions:\n  - {name: echo, url: 'http://127.0.0.1:9'}\n"
TWICE = ONE_FUNCTION + "  - {name: echo, url: 'http://127.0.0.1:8'}\n"

CASES = {
    "worker upstream_timeout=0": ("queue-worker", {"upstream_timeout": "0"}, "upstream_timeout"),
    "worker callback_timeout=0": ("queue-worker", {"callback_timeout": "0s"}, "callback_timeout"),
    "worker upstream_timeout<0": ("queue-worker", {"upstream_timeout": "-1s"}, "upstream_timeout"),
    "worker nats_connect_timeout=0": (
        "queue-worker",
        {"nats_connect_timeout": "0"},
        "nats_connect_timeout",
    ),
    "worker upstream_timeout=inf": (
        "queue-worker",
        {"upstream_timeout": "inf"},
        "upstream_timeout",
    ),
    "worker malformed CIDR": (
        "queue-worker",
        {"callback_allowed_hosts": "10.0.0.0/8,300.1.1.1/99"},
        "callback_allowed_hosts",
    ),
    "worker health_host": ("queue-worker", {"health_host": "999.1.1.1"}, "health_host"),
    "worker fair_sort_after<0": ("queue-worker", {"fair_sort_after": "-2s"}, "fair_sort_after"),
    "worker fair_sort_after too long": (
        "queue-worker",
        {"fair_sort_after": "9" * 5000},
        "fair_sort_after",
    ),
    "gateway publish_timeout=0": ("gateway", {"publish_timeout": "0"}, "publish_timeout"),
    "gateway upstream_timeout=0": ("gateway", {"upstream_timeout": "0ms"}, "upstream_timeout"),
    "gateway read_timeout=0": ("gateway", {"read_timeout": "0"}, "read_timeout"),
    "gateway refresh_interval=0": ("gateway", {"refresh_interval": "0"}, "refresh_interval"),
    "sqs sqs_connect_timeout=0": (
        "sqs-connector",
        {"sqs_connect_timeout": "0s", "sqs_region": "us-east-1"},
        "sqs_connect_timeout",
    ),
    "kafka commit_interval=0": ("kafka-connector", {"commit_interval": "0"}, "commit_interval"),
    "kafka upstream_timeout=0": (
        "kafka-connector",
        {"upstream_timeout": "0", "topics": "orders"},
        "upstream_timeout",
    ),
    "gateway listen_host": ("gateway", {"listen_host": "999.1.1.1"}, "listen_host"),
    "gateway malformed CIDR": (
        "gateway",
        {"callback_allowed_hosts": "300.1.1.1/99"},
        "callback_allowed_hosts",
    ),
}


@pytest.mark.parametrize(("command", "env", "variable"), CASES.values(), ids=list(CASES))
async def test_a_useless_or_malformed_setting_is_one_line_naming_it_and_exit_2(
    command: str, env: dict[str, str], variable: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    base = {"nats_url": nats_server.url, "gateway_url": "http://127.0.0.1:9"}
    if command == "gateway":
        base["functions_file"] = _functions(tmp_path, ONE_FUNCTION)
    status, output = await run_to_exit(command, {**base, **env})
    assert status == EXIT_CONFIG, output
    assert output.count("\n") == 0 and "Traceback" not in output, output
    assert variable in output


async def test_a_function_listed_twice_is_refused(nats_server: NatsServer, tmp_path: Path) -> None:
    env = {"nats_url": nats_server.url, "functions_file": _functions(tmp_path, TWICE)}
    status, output = await run_to_exit("gateway", env)
    assert status == EXIT_CONFIG, output
    assert "functions_file=" in output and "echo.openfaas-fn is listed twice" in output


@pytest.mark.parametrize(("user", "password"), [("", "secret"), ("admin", "\n")])
@pytest.mark.parametrize("command", ["gateway", "queue-worker"])
async def test_an_empty_basic_auth_file_is_refused(
    command: str, user: str, password: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    env = {
        "nats_url": nats_server.url,
        "basic_auth": "true",
        "secret_mount_path": _secrets(tmp_path, user, password),
        "gateway_url": "http://127.0.0.1:9",
        "upstream_url": "http://127.0.0.1:9",
    }
    status, output = await run_to_exit(command, env)
    assert status == EXIT_CONFIG, output
    assert output.count("\n") == 0 and "is empty" in output, output


@pytest.mark.parametrize("mode", ["proxy", "standalone", "queue-worker"])
async def test_a_bad_basic_auth_file_is_named_before_nats_is_tried(
    mode: str, tmp_path: Path
) -> None:
    """With NATS down as well, the one line is about the secret, not the connection: a user
    fixes their settings before the broker is even reachable."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # nothing listens here
    env = {
        "nats_url": f"nats://127.0.0.1:{closed.getsockname()[1]}",
        "nats_connect_timeout": "30s",
        "basic_auth": "true",
        "secret_mount_path": _secrets(tmp_path, "", "secret"),
        "gateway_url": "http://127.0.0.1:9",
    }
    if mode == "proxy":
        env["upstream_url"] = "http://127.0.0.1:9"
    elif mode == "standalone":
        env["functions_file"] = _functions(tmp_path, ONE_FUNCTION)
    command = "queue-worker" if mode == "queue-worker" else "gateway"
    try:
        status, output = await run_to_exit(command, env, timeout=20)
    finally:
        closed.close()
    assert status == EXIT_CONFIG, output
    assert output.count("\n") == 0 and "is empty" in output, output


@pytest.mark.parametrize("command", ["gateway", "queue-worker"])
async def test_a_basic_auth_file_that_never_ends_is_refused_not_read(
    command: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    folder = Path(_secrets(tmp_path, "admin", "x"))
    (folder / "basic-auth-password").unlink()
    (folder / "basic-auth-password").symlink_to("/dev/zero")
    env = {
        "nats_url": nats_server.url,
        "basic_auth": "true",
        "secret_mount_path": str(folder),
        "gateway_url": "http://127.0.0.1:9",
        "upstream_url": "http://127.0.0.1:9",
    }
    status, output = await run_to_exit(command, env)
    assert status == EXIT_CONFIG, output
    assert output.count("\n") == 0 and "larger than" in output, output


# A value of the right type below the floor where the setting makes sense (issue 24): the one
# line names the variable, the value and the floor.
BELOW_THE_FLOOR = {
    "gateway publish_timeout=1ns": ("gateway", "publish_timeout", "1ns", "10ms"),
    "gateway max_body_bytes=0": ("gateway", "max_body_bytes", "0", "1024"),
    "gateway read_timeout=1ms": ("gateway", "read_timeout", "1ms", "10ms"),
    "gateway refresh_interval=1ms": ("gateway", "refresh_interval", "1ms", "100ms"),
    "gateway call_ledger_ttl=1ns": ("gateway", "call_ledger_ttl", "1ns", "1m"),
    "worker callback_timeout=1e-9": ("queue-worker", "callback_timeout", "1e-9", "10ms"),
    "worker call_ledger_ttl=1ns": ("queue-worker", "call_ledger_ttl", "1ns", "1m"),
    "worker large_body_ttl=1s": ("queue-worker", "large_body_ttl", "1s", "1m"),
    "worker max_response_bytes=10": ("queue-worker", "max_response_bytes", "10", "1024"),
    "worker nats_ping_interval=1ns": ("queue-worker", "nats_ping_interval", "1ns", "100ms"),
    "worker ack_wait=500ms": ("queue-worker", "ack_wait", "500ms", "1s"),
    "kafka session_timeout=100ms": ("kafka-connector", "session_timeout", "100ms", "1s"),
    "kafka heartbeat_interval=1ms": ("kafka-connector", "heartbeat_interval", "1ms", "100ms"),
    "kafka startup_timeout=0": ("kafka-connector", "startup_timeout", "0", "100ms"),
    "sqs rebuild_interval=1ns": ("sqs-connector", "rebuild_interval", "1ns", "100ms"),
}


@pytest.mark.parametrize(
    ("command", "variable", "value", "floor"), BELOW_THE_FLOOR.values(), ids=list(BELOW_THE_FLOOR)
)
async def test_a_setting_below_its_floor_is_one_line_naming_the_floor_and_exit_2(
    command: str, variable: str, value: str, floor: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    env = {
        "nats_url": nats_server.url,
        "gateway_url": "http://127.0.0.1:9",
        "topics": "orders",
        "queue_url": "http://127.0.0.1:9/000000000000/q",
        "sqs_region": "us-east-1",
        variable: value,
    }
    if command == "gateway":
        env["functions_file"] = _functions(tmp_path, ONE_FUNCTION)
    status, output = await run_to_exit(command, env)
    assert status == EXIT_CONFIG, output
    assert output == f"ferry: {variable}={value!r}: must be at least {floor}"


def test_a_setting_too_long_is_named_in_a_short_line() -> None:
    """A value of any length is shown cut short, once: the error stays one readable line."""
    for value in ("9" * 5000, "x" * 5000, "2s\x07" * 2000, "-1s", "\x1b[31m"):
        with pytest.raises(ConfigError) as raised:
            load_settings(QueueWorkerConfig, {"fair_sort_after": value})
        text = str(raised.value)
        assert text.startswith("fair_sort_after=") and len(text) < 300, text
        assert "\n" not in text and "\x1b" not in text and "\x07" not in text, text

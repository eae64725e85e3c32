"""Bad configuration of the SQS connector: one clear line and exit status 2."""

from __future__ import annotations

import time

import pytest

from tests.support.ports import free_port
from tests.support.procs import run_to_exit


async def _exit(env: dict[str, str]) -> tuple[int, str]:
    return await run_to_exit("sqs-connector", env)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "queue_url"),
        ({"queue_url": "http://127.0.0.1:1/q", "max_messages": "11"}, "max_messages"),
        ({"queue_url": "http://127.0.0.1:1/q", "visibility_timeout": "soon"}, "visibility_timeout"),
        ({"queue_url": "http://127.0.0.1:1/q", "wait_time": "21s"}, "wait_time"),
    ],
)
async def test_bad_config_exits_2_naming_the_variable(env: dict[str, str], named: str) -> None:
    code, output = await _exit(env)
    assert code == 2
    assert output.count("\n") == 0, output
    assert named in output


async def test_unreachable_endpoint_at_start_exits_2_in_one_line_quickly() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, output = await _exit(
        {"queue_url": f"{dead}/123456789012/q", "endpoint_url": dead, "sqs_connect_timeout": "1s"}
    )
    assert code == 2
    assert output.startswith("ferry: cannot use SQS"), output
    assert output.count("\n") == 0, output
    assert time.monotonic() - started < 20

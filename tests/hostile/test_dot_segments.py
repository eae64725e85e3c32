"""Finding 4: dot segments never reach an upstream, nor the queue (400 on every route)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.core.targets import path_problem
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.queue import QueueUnderTest
from tests.support.streams import stored_messages
from tests.support.wire import exchange, request

DOTTED_TAILS = [
    "%2e%2e/%2e%2e/system/functions",
    "%2E%2e/stats",
    "../../stats",
    "./x",
    "a/%2e/b",
    "a%2f..%2fsystem",
    "a%5c..",
]


@pytest.mark.parametrize("tail", DOTTED_TAILS)
def test_dot_segments_raw_or_encoded_are_refused(tail: str) -> None:
    assert path_problem("/function/echo/" + tail) is not None


@pytest.mark.parametrize("path", ["/function/echo", "/a/b.c/..d/.e./%2e%2ex", "/a%20b/%41"])
def test_names_with_dots_in_them_are_fine(path: str) -> None:
    assert path_problem(path) is None


@pytest.mark.parametrize("mode", ["standalone", "proxy"])
async def test_every_route_answers_400_to_a_dot_segment_and_nothing_is_sent_on(
    mode: str, queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    gateway.function("echo")
    gateway.subscribe("echo", "t")
    if mode == "standalone":
        functions = write_functions(tmp_path / "f.yml", {"echo": {"url": gateway.url}})
        env = gateway_env(queue, functions_file=str(functions))
    else:
        env = gateway_env(queue, upstream_url=gateway.url)
    async with running_gateway(env) as front:
        for tail in DOTTED_TAILS:
            for target in (
                f"/async-function/echo/{tail}",
                f"/function/echo/{tail}",
                f"/async-function/{tail}",
                f"/{tail}",
            ):
                status, _, body = await exchange(front.port, request("POST", target, body=b"x"))
                assert status == 400, (target, body)
        status, _, _ = await exchange(front.port, request("POST", "/async-function/echo/ok"))
        assert status == 202
    assert gateway.calls == []
    assert [m.subject for m in await stored_messages(queue.js, queue.stream)] == [queue.stream]

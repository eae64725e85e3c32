"""Finding 12: a head with bare LF line endings is answered at once, not after a timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.request_head import HAND_OFF, read_head
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.queue import QueueUnderTest
from tests.support.wire import raw_wire

BARE_LF = [
    b"POST /async-function/echo HTTP/1.1\nHost: h\nContent-Length: 0\n\n",
    b"POST /async-function/echo HTTP/1.1\r\nHost: h\nContent-Length: 0\r\n\r\n",
    b"POST /async-function/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 0\n\n",
]


@pytest.mark.parametrize("data", BARE_LF)
def test_the_lean_reader_hands_a_bare_lf_head_to_aiohttp_before_it_ends(data: bytes) -> None:
    assert read_head(data, 1000) is HAND_OFF


@pytest.mark.parametrize("data", BARE_LF)
async def test_a_bare_lf_head_is_answered_without_waiting_for_a_timeout(
    data: bytes, queue: QueueUnderTest, tmp_path: Path
) -> None:
    functions = write_functions(tmp_path / "f.yml", {"echo": {"url": "http://127.0.0.1:9"}})
    # read_timeout and keep-alive far beyond the answer's own 10 s timeout
    env = gateway_env(queue, functions_file=str(functions), read_timeout="5m")
    async with running_gateway(env) as front, raw_wire(front.port) as wire:
        await wire.send(data)
        status, _, _ = await wire.answer(timeout=10)
    assert status in (400, 202)

"""Finding 12: a head with bare LF line endings is answered at once, not after a timeout."""

from __future__ import annotations

import time
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


READ_TIMEOUT = 20.0
# aiohttp's parser names where the CR is missing
REFUSED = [b"Expected CRLF after version", *[b"Missing expected CR after header value"] * 2]


@pytest.mark.parametrize(("data", "reason"), list(zip(BARE_LF, REFUSED, strict=True)))
async def test_a_bare_lf_head_is_answered_without_waiting_for_a_timeout(
    data: bytes, reason: bytes, queue: QueueUnderTest, tmp_path: Path
) -> None:
    functions = write_functions(tmp_path / "f.yml", {"echo": {"url": "http://127.0.0.1:9"}})
    env = gateway_env(queue, functions_file=str(functions), read_timeout=f"{READ_TIMEOUT:g}s")
    async with running_gateway(env) as front, raw_wire(front.port) as wire:
        sent = time.monotonic()
        await wire.send(data)
        # waited for past read_timeout, so a gateway that waits for the head to end is seen
        status, _, body = await wire.answer(timeout=READ_TIMEOUT + 10)
        waited = time.monotonic() - sent
    assert (status, reason in body) == (400, True), body
    assert waited < READ_TIMEOUT / 4, f"answered after {waited:.1f}s"

"""Delayed calls in tests: a functions file serving `echo`, posting to the front door, and how
late a delayed call may run."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.support.front_door import write_functions
from tests.support.http import FakeGateway

# A delayed call fires within 1 s of its time on an idle machine (bench/delayed_calls.py);
# the shared CI machine gets more room.
LATE_ALLOWED = 4.0


@pytest.fixture(name="functions_file")
def echo_functions_file(tmp_path: Path, gateway: FakeGateway) -> Path:
    """`functions_file`: `echo`, answering 200, is the one function (a test module imports it)."""
    gateway.function("echo")
    return write_functions(tmp_path / "functions.yml", {"echo": {"url": f"{gateway.url}/x"}})


async def post(url: str, headers: dict[str, str]) -> tuple[int, str, str]:
    """POST with no body: the status, the answer's text and its X-Call-Id."""
    async with aiohttp.ClientSession() as session, session.post(url, headers=headers) as answer:
        return answer.status, await answer.text(), answer.headers.get("X-Call-Id", "")

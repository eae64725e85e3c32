"""Running `ferry` subcommands as child processes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from tests.support.brokers import test_environ


@dataclass
class Finished:
    status: int
    stdout: str
    stderr: str


async def ferry(*args: str, env: Mapping[str, str], stdin: bytes | None = None) -> Finished:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry",
        *args,
        env=test_environ(**env),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(stdin or b""), 60)
    assert child.returncode is not None
    return Finished(child.returncode, out.decode(), err.decode())

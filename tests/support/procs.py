"""A ferry subcommand as a real child process, with its stderr kept for the test report."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile

from tests.support.brokers import test_environ


class FerryProcess:
    """`python -m ferry COMMAND` with an environment; SIGTERM or SIGKILL it like an orchestrator."""

    def __init__(self, command: str, env: dict[str, str], *args: str) -> None:
        self.command = command
        self.args = args
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the child
            prefix=f"ferry-{command}-", suffix=".log", delete=False
        )

    async def start(self) -> FerryProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ferry",
            self.command,
            *self.args,
            env=test_environ(**self.env),
            stdout=self.log,
            stderr=self.log,
        )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def output(self) -> str:
        with open(self.log.name, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def kill(self) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()

    async def close(self) -> None:
        if self.running:
            await self.kill()
        self.log.close()
        os.unlink(self.log.name)


async def run_to_exit(command: str, env: dict[str, str], timeout: float = 30.0) -> tuple[int, str]:
    """Run `ferry COMMAND` until it exits by itself; return its status and what it printed."""
    proc = await FerryProcess(command, {"health_port": "0", **env}).start()
    assert proc.process is not None
    try:
        code = await asyncio.wait_for(proc.process.wait(), timeout)
        return code, proc.output().strip()
    finally:
        await proc.close()

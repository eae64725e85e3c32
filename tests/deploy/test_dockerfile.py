"""deploy/Dockerfile builds one small, non-root image for every process; checked statically
(no Docker engine here), and its HEALTHCHECK command is run against a real health server."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tomllib

from prometheus_client import CollectorRegistry

from connectors.core.health import HealthServer
from tests.deploy.processes import ROOT
from tests.support.ports import free_port

DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            found.append([])
        if found:
            found[-1].append((word, rest))
    return found


def final() -> list[tuple[str, str]]:
    return stages()[-1]


def test_multi_stage_with_a_slim_final_stage() -> None:
    assert len(stages()) >= 2
    base = final()[0][1]
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim|python:3\.1[1-9][\w.-]*-slim", base)


def test_the_final_stage_installs_nothing_and_copies_only_the_venv() -> None:
    runs = " ".join(rest for word, rest in final() if word == "RUN")
    for tool in ("pip", "apt-get", "apk", "gcc", "build-essential"):
        assert tool not in runs
    copies = [rest for word, rest in final() if word == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies)


def test_the_builder_installs_the_extras_of_every_process_and_no_dev_tools() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    builder = " ".join(rest for stage in stages()[:-1] for word, rest in stage if word == "RUN")
    installed = set(re.findall(r"\.\[([\w,]+)\]", builder)[0].split(","))
    assert installed == {"kafka", "sqs", "cron", "tracing"}
    assert installed <= set(extras)


def test_runs_as_a_non_root_user_with_the_ferry_entrypoint() -> None:
    users = [rest for word, rest in final() if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    [entrypoint] = [rest for word, rest in final() if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["ferry"]


def test_carries_oci_labels() -> None:
    labels = " ".join(rest for word, rest in final() if word == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def healthcheck() -> list[str]:
    [check] = [rest for word, rest in final() if word == "HEALTHCHECK"]
    command: list[str] = json.loads(check.split("CMD", 1)[1])
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


async def run_healthcheck(port: int) -> tuple[int, bytes]:
    env = {"health_port": str(port), "PATH": "/usr/bin:/bin"}
    child = await asyncio.create_subprocess_exec(
        *healthcheck(), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(child.communicate(), 15)
    assert child.returncode is not None
    return child.returncode, output


async def test_the_healthcheck_passes_on_a_live_health_server_and_fails_without_one() -> None:
    server = HealthServer(CollectorRegistry(), lambda: True, host="127.0.0.1", port=0)
    port = await server.start()
    try:
        status, output = await run_healthcheck(port)
        assert status == 0, output
    finally:
        await server.stop()
    status, _ = await run_healthcheck(free_port())
    assert status != 0


def test_dockerignore_lets_in_only_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = {
        part.rstrip("/").removeprefix("./")
        for stage in stages()[:-1]
        for word, rest in stage
        if word == "COPY" and not rest.startswith("--from")
        for part in rest.split()[:-1]
    }
    assert sources == allowed
    assert all((ROOT / source).exists() for source in sources)

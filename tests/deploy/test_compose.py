"""docker-compose.yml is a valid Compose file whose ferry services run real processes with
environments those processes read, published on loopback only, all scraped by Prometheus."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml

from connectors.core.settings import load_settings
from gateway.functions import parse_functions_file
from tests.deploy.processes import (
    ROOT,
    duration_seconds,
    env_problems,
    graceful_timeout,
    process_configs,
)

COMPOSE = ROOT / "docker-compose.yml"
FERRY_DOCKERFILE = "deploy/Dockerfile"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema as vendored by check-jsonschema (no network)."""
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


def ferry_services() -> dict[str, dict[str, Any]]:
    """Services that run the ferry image (built from deploy/Dockerfile, or named `ferry:*`)."""
    services: dict[str, dict[str, Any]] = compose()["services"]
    return {
        name: svc
        for name, svc in services.items()
        if (
            isinstance(svc.get("build"), dict)
            and svc["build"].get("dockerfile") == FERRY_DOCKERFILE
        )
        or str(svc.get("image", "")).split(":")[0] == "ferry"
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_the_file_follows_the_compose_specification() -> None:
    jsonschema.validate(compose(), compose_schema())


def test_the_schema_check_can_fail() -> None:
    broken = compose()
    broken["services"]["gateway"]["ports"] = [{"published": "8080", "bogus": True}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema())


def test_every_ferry_service_builds_the_one_image() -> None:
    images = {(svc["image"], svc["build"]["dockerfile"]) for svc in ferry_services().values()}
    assert images == {("ferry:dev", FERRY_DOCKERFILE)}


def test_every_long_running_process_has_a_service() -> None:
    commands = {svc["command"][0] for svc in ferry_services().values()}
    assert commands == set(process_configs())


@pytest.mark.parametrize("name", sorted(ferry_services()))
def test_each_ferry_service_runs_a_process_with_an_environment_it_reads(name: str) -> None:
    service = ferry_services()[name]
    command = service["command"]
    assert len(command) == 1, command
    assert env_problems(command[0], environment(service)) == []


@pytest.mark.parametrize("name", sorted(ferry_services()))
def test_docker_waits_longer_than_the_drain(name: str) -> None:
    service = ferry_services()[name]
    drain = graceful_timeout(service["command"][0], environment(service))
    assert duration_seconds(service["stop_grace_period"]) > drain


def test_published_ports_listen_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_prometheus_scrapes_every_ferry_service_on_its_health_port() -> None:
    config = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    wanted = set()
    for name, service in ferry_services().items():
        command = service["command"][0]
        config_cls = process_configs()[command]
        port = load_settings(config_cls, environment(service)).runtime.health_port
        wanted.add(f"{name}:{port}")
    assert targets == wanted


def test_the_console_reads_the_stacks_nats_and_front_door_and_is_published_on_loopback() -> None:
    """Served without credentials (the stack has none), so reachable from this machine only."""
    services = ferry_services()
    console = load_settings(process_configs()["console"], environment(services["console"]))
    gateway = load_settings(process_configs()["gateway"], environment(services["gateway"]))
    assert console.nats.nats_url == gateway.nats.nats_url
    assert console.gateway.gateway_url == f"http://gateway:{gateway.port}"
    assert (console.console_enabled, console.gateway.basic_auth) == ("true", False)
    assert services["console"]["ports"] == [f"127.0.0.1:{console.port}:{console.port}"]


def test_mounted_files_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)


def test_the_example_functions_file_loads() -> None:
    functions = parse_functions_file(ROOT / "deploy/compose/functions.yml")
    assert functions.find("echo") is not None
    services = set(compose()["services"])
    for fn in functions.functions:
        host = fn.url.split("//", 1)[1].split(":", 1)[0].split("/", 1)[0]
        assert host in services, (fn.name, fn.url)


def test_grafana_provisions_the_dashboard_folder_it_mounts() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/ferry.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    source = next(src for src, dst in mounts.items() if dst == path)
    assert list((ROOT / source).glob("*.json")), source


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip("the docker client here has no compose plugin (`docker compose` unknown)")
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr

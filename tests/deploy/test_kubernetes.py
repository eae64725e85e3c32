"""Every kustomize overlay renders offline into valid Kubernetes objects, and every ferry
Deployment in it runs a real process with an environment it reads, drains before it is killed,
is probed on /healthz and /readyz, runs locked down, and has a metrics Service and a PDB."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from connectors.core.settings import load_settings, read_names
from tests.deploy.processes import (
    ROOT,
    env_problems,
    graceful_timeout,
    kustomize,
    process_configs,
)

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.parent for p in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
BASES = sorted(p.parent for p in (KUBERNETES / "base").glob("*/kustomization.yaml"))
KUBERNETES_VERSION = "1.30.0"

Doc = dict[str, Any]


def render(folder: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(kustomize(folder)) if doc]


def deployments(docs: list[Doc]) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == "Deployment"]


def container(deployment: Doc) -> Doc:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    result: Doc = only
    return result


def literal_env(c: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def selects(selector: dict[str, str], deployment: Doc) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def rendered_deployments() -> list[tuple[str, Doc, list[Doc]]]:
    out: list[tuple[str, Doc, list[Doc]]] = []
    if shutil.which("kubectl") is None:
        return out  # every test that renders is skipped, saying why
    for folder in OVERLAYS:
        docs = render(folder)
        for deployment in deployments(docs):
            out.append((f"{folder.name}/{deployment['metadata']['name']}", deployment, docs))
    return out


DEPLOYMENTS = rendered_deployments()
IDS = [name for name, _, _ in DEPLOYMENTS]


def test_there_are_overlays_and_a_base_per_process() -> None:
    assert {p.name for p in OVERLAYS} >= {"openfaas", "standalone"}
    assert {p.name for p in BASES} == set(process_configs())


@pytest.mark.parametrize("folder", OVERLAYS + BASES, ids=lambda p: p.name)
def test_renders_into_objects_kubernetes_accepts(folder: Path) -> None:
    docs = render(folder)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_schema_validation_can_fail() -> None:
    [deployment] = deployments(render(KUBERNETES / "base" / "queue-worker"))
    container(deployment)["livenessProbe"]["httpGet"]["path"] = 42
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_process_is_deployed_by_some_overlay() -> None:
    render(OVERLAYS[0])  # skips, saying why, without kubectl
    commands = {container(d)["args"][0] for _, d, _ in DEPLOYMENTS}
    assert commands == set(process_configs())


@pytest.mark.parametrize(("name", "deployment", "docs"), DEPLOYMENTS, ids=IDS)
def test_runs_a_process_with_an_environment_it_reads(
    name: str, deployment: Doc, docs: list[Doc]
) -> None:
    c = container(deployment)
    command = c["args"][0]
    names = {e["name"] for e in c.get("env", [])}
    assert names <= read_names(process_configs()[command])
    assert env_problems(command, literal_env(c)) == []


@pytest.mark.parametrize(("name", "deployment", "docs"), DEPLOYMENTS, ids=IDS)
def test_kubernetes_waits_longer_than_the_drain(
    name: str, deployment: Doc, docs: list[Doc]
) -> None:
    c = container(deployment)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > graceful_timeout(c["args"][0], literal_env(c))


@pytest.mark.parametrize(("name", "deployment", "docs"), DEPLOYMENTS, ids=IDS)
def test_probes_hit_healthz_and_readyz_on_the_health_port(
    name: str, deployment: Doc, docs: list[Doc]
) -> None:
    c = container(deployment)
    config = load_settings(process_configs()[c["args"][0]], literal_env(c))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == config.runtime.health_port
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == config.runtime.health_port


@pytest.mark.parametrize(("name", "deployment", "docs"), DEPLOYMENTS, ids=IDS)
def test_runs_as_non_root_read_only_without_privileges(
    name: str, deployment: Doc, docs: list[Doc]
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = c["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]


@pytest.mark.parametrize(("name", "deployment", "docs"), DEPLOYMENTS, ids=IDS)
def test_has_requests_and_limits(name: str, deployment: Doc, docs: list[Doc]) -> None:
    resources = container(deployment)["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}


@pytest.mark.parametrize(("name", "deployment", "docs"), DEPLOYMENTS, ids=IDS)
def test_has_a_metrics_service_and_a_disruption_budget(
    name: str, deployment: Doc, docs: list[Doc]
) -> None:
    services = [
        d
        for d in docs
        if d["kind"] == "Service"
        and selects(d["spec"]["selector"], deployment)
        and any(p["name"] == "metrics" for p in d["spec"]["ports"])
    ]
    assert len(services) == 1
    assert services[0]["metadata"]["labels"]["app.kubernetes.io/name"]
    budgets = [
        d
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
        and selects(d["spec"]["selector"]["matchLabels"], deployment)
    ]
    assert len(budgets) == 1


def test_the_openfaas_overlay_replaces_openfaas_queue_worker() -> None:
    docs = render(KUBERNETES / "overlays" / "openfaas")
    worker = next(d for d in deployments(docs) if d["metadata"]["name"] == "queue-worker")
    assert worker["metadata"]["namespace"] == "openfaas"
    # OpenFaaS's Deployment selects `app: queue-worker`; a selector cannot change in place
    assert worker["spec"]["selector"]["matchLabels"] == {"app": "queue-worker"}
    c = container(worker)
    env = literal_env(c)
    config = load_settings(process_configs()["queue-worker"], env)
    assert config.nats.nats_url == "nats://nats.openfaas:4222"
    assert config.gateway.gateway_url == "http://gateway.openfaas:8080"
    assert config.gateway.basic_auth is True
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == config.gateway.secret_mount_path)
    volume = next(
        v for v in worker["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    assert volume["secret"]["secretName"] == "basic-auth"

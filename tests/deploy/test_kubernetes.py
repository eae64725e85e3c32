"""Every kustomize overlay renders offline into valid Kubernetes objects, and every ferry
Deployment in it runs a real process with an environment it reads, drains before it is killed,
is probed on /healthz and /readyz, runs locked down, and has a metrics Service and a PDB."""

from __future__ import annotations

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
    for folder in OVERLAYS:
        docs = render(folder)
        for deployment in deployments(docs):
            out.append((f"{folder.name}/{deployment['metadata']['name']}", deployment, docs))
    return out


DEPLOYMENTS = rendered_deployments()
IDS = [name for name, _, _ in DEPLOYMENTS]


def test_there_are_overlays_and_a_base_per_process() -> None:
    assert {p.name for p in OVERLAYS} >= {"openfaas-ce", "openfaas-pro", "standalone"}
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


def scrape_annotations_problems(deployment: Doc) -> list[str]:
    """Why the OpenFaaS chart's Prometheus would not scrape this ferry pod's /metrics: it keeps
    pods annotated `prometheus.io/scrape: "true"` and takes the port from `prometheus.io/port`
    (and other Prometheus set-ups the path from `prometheus.io/path`)."""
    c = container(deployment)
    config = load_settings(process_configs()[c["args"][0]], literal_env(c))
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    wanted = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(config.runtime.health_port),
        "prometheus.io/path": "/metrics",
    }
    return [
        f"{key}={annotations.get(key)!r}, not {value!r}"
        for key, value in wanted.items()
        if annotations.get(key) != value
    ]


@pytest.mark.parametrize(("name", "deployment", "docs"), DEPLOYMENTS, ids=IDS)
def test_every_pod_is_annotated_for_the_openfaas_charts_prometheus(
    name: str, deployment: Doc, docs: list[Doc]
) -> None:
    assert scrape_annotations_problems(deployment) == []


def test_the_scrape_annotation_check_can_fail() -> None:
    [deployment] = deployments(render(KUBERNETES / "base" / "queue-worker"))
    deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = "8080"
    assert scrape_annotations_problems(deployment) == ["prometheus.io/port='8080', not '8081'"]


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


# Objects the OpenFaaS chart (and its connector charts) create, and the `app` labels its pods
# carry: a ferry object with one of these names would be owned by Helm and ferry at once, and a
# ferry selector with one of these labels would pick the chart's pods.
CHART_NAMES = {"queue-worker", "cron-connector", "kafka-connector", "nats", "gateway"}
CHART_NAMES |= {"gateway-external", "gateway-provider", "basic-auth", "openfaas-license"}
CHART_APPS = {"queue-worker", "cron-connector", "kafka-connector", "nats", "gateway"}
OPENFAAS_OVERLAYS = [KUBERNETES / "overlays" / name for name in ("openfaas-ce", "openfaas-pro")]
IN_CLUSTER_CALLBACK = "http://gateway.openfaas:8080/function/receiver"


def selectors(doc: Doc) -> list[dict[str, str]]:
    spec = doc.get("spec", {})
    found = [spec["selector"]] if doc["kind"] == "Service" and spec.get("selector") else []
    if isinstance(spec.get("selector"), dict) and "matchLabels" in spec["selector"]:
        found.append(spec["selector"]["matchLabels"])
    return found


@pytest.mark.parametrize("folder", OVERLAYS, ids=lambda p: p.name)
def test_no_object_of_a_ferry_overlay_has_a_name_or_selector_the_openfaas_chart_owns(
    folder: Path,
) -> None:
    docs = render(folder)
    assert {d["metadata"]["name"] for d in docs} & CHART_NAMES == set()
    for doc in docs:
        for selector in selectors(doc):
            assert selector.get("app") not in CHART_APPS, doc["metadata"]["name"]


def test_the_name_check_can_fail() -> None:
    docs = render(KUBERNETES / "base" / "queue-worker")
    docs[0]["metadata"]["name"] = "queue-worker"
    assert {d["metadata"]["name"] for d in docs} & CHART_NAMES == {"queue-worker"}


def _config(docs: list[Doc], name: str) -> Any:
    deployment = next(d for d in deployments(docs) if d["metadata"]["name"] == name)
    c = container(deployment)
    return deployment, c, load_settings(process_configs()[c["args"][0]], literal_env(c))


def _mounts_basic_auth(deployment: Doc, c: Doc, path: str) -> bool:
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == path)
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == mount["name"])
    return bool(volume["secret"]["secretName"] == "basic-auth")


def test_the_pro_overlay_shares_the_charts_nats_stream_durable_and_retry_values() -> None:
    docs = render(KUBERNETES / "overlays" / "openfaas-pro")
    deployment, c, config = _config(docs, "ferry-queue-worker")
    assert deployment["metadata"]["namespace"] == "openfaas"
    assert config.nats.nats_url == "nats://nats.openfaas:4222"
    assert (config.nats.nats_stream, config.nats_durable) == ("faas-request", "faas-workers")
    assert config.gateway.gateway_url == "http://gateway.openfaas:8080"
    assert config.gateway.basic_auth is True
    assert _mounts_basic_auth(deployment, c, config.gateway.secret_mount_path)
    assert config.retry.max_retry_attempts == 100  # the chart's queueWorkerPro.maxRetryAttempts
    # the chart's queueWorkerPro.maxInflight (per replica) and queueWorker.ackWait
    assert (config.max_inflight, config.ack_wait) == (50, 60.0)
    assert {d["kind"] for d in docs} <= {"Deployment", "Service", "PodDisruptionBudget"}


def test_the_ce_overlay_brings_its_own_jetstream_and_the_front_door_in_proxy_mode() -> None:
    docs = render(KUBERNETES / "overlays" / "openfaas-ce")
    [nats] = [d for d in docs if d["kind"] == "StatefulSet"]
    assert "--jetstream" in container(nats)["args"]
    assert nats["spec"]["volumeClaimTemplates"]  # queued calls survive a restart
    service = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "ferry-nats"
    )
    assert selects(service["spec"]["selector"], nats)
    deployment, c, gateway = _config(docs, "ferry-gateway")
    assert gateway.upstream_url == "http://gateway.openfaas:8080"
    assert gateway.nats.nats_url == "nats://ferry-nats:4222"
    assert _mounts_basic_auth(deployment, c, gateway.secret_mount_path)
    for name in ("ferry-queue-worker", "ferry-cron-connector"):
        deployment, c, config = _config(docs, name)
        assert "ferry-nats:4222" in config.nats.nats_url
        assert config.gateway.gateway_url == "http://gateway.openfaas:8080"
        assert _mounts_basic_auth(deployment, c, config.gateway.secret_mount_path)


@pytest.mark.parametrize("folder", OPENFAAS_OVERLAYS, ids=lambda p: p.name)
def test_openfaas_overlays_let_callbacks_reach_services_in_the_cluster(folder: Path) -> None:
    from connectors.core.config import CallbackSettings
    from connectors.core.urlguard import CallbackPolicy

    strict = CallbackPolicy.from_settings(CallbackSettings())
    assert not strict.host_listed("gateway.openfaas")  # outside Kubernetes: refused
    docs = render(folder)
    names = [d["metadata"]["name"] for d in deployments(docs)]
    for name in [n for n in names if n in {"ferry-queue-worker", "ferry-gateway"}]:
        _, _, config = _config(docs, name)
        settings = config.callbacks if name == "ferry-queue-worker" else config
        policy = CallbackPolicy.build(
            settings.callback_allowed_hosts, settings.callback_allow_private
        )
        assert policy.allow_private is False
        for host in ("gateway.openfaas", "receiver.openfaas-fn.svc.cluster.local"):
            assert policy.host_listed(host), (name, host)
        assert not policy.host_listed("example.com")


@pytest.mark.parametrize("folder", OPENFAAS_OVERLAYS, ids=lambda p: p.name)
def test_openfaas_overlays_run_the_console_on_what_the_worker_and_cron_write(
    folder: Path,
) -> None:
    """The console shows the queue, the ledger and the cron claims: the same NATS, stream and
    buckets as the processes that write them, and the functions of the OpenFaaS gateway."""
    docs = render(folder)
    _, _, worker = _config(docs, "ferry-queue-worker")
    _, _, cron = _config(docs, "ferry-cron-connector")
    deployment, c, console = _config(docs, "ferry-console")
    assert console.nats.nats_url == worker.nats.nats_url == cron.nats.nats_url
    assert console.nats.nats_stream == worker.nats.nats_stream
    assert console.ledger.call_ledger_bucket == worker.ledger.call_ledger_bucket
    assert console.cron_kv_bucket == cron.cron.cron_kv_bucket
    assert console.gateway.gateway_url == "http://gateway.openfaas:8080"
    service = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "ferry-console"
    )
    assert selects(service["spec"]["selector"], deployment)
    [port] = service["spec"]["ports"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port["targetPort"] == "http" and ports["http"] == console.port


@pytest.mark.parametrize(
    ("name", "deployment", "docs"),
    [case for case in DEPLOYMENTS if container(case[1])["args"][0] == "console"],
    ids=[name for name, d, _ in DEPLOYMENTS if container(d)["args"][0] == "console"],
)
def test_every_deployed_console_asks_for_the_gateways_credentials(
    name: str, deployment: Doc, docs: list[Doc]
) -> None:
    c = container(deployment)
    config = load_settings(process_configs()["console"], literal_env(c))
    assert config.gateway.basic_auth is True
    assert config.console_enabled != "true"
    assert _mounts_basic_auth(deployment, c, config.gateway.secret_mount_path)


def test_the_standalone_overlay_leaves_the_console_to_its_front_door() -> None:
    docs = render(KUBERNETES / "overlays" / "standalone")
    commands = {container(d)["args"][0] for d in deployments(docs)}
    assert "gateway" in commands and "console" not in commands

"""The Helm chart `deploy/helm/ferry`, with the real `helm` (installed by scripts/tools): it
lints, renders for the default values and each values file into objects Kubernetes accepts,
holds every ferry Deployment to the same rules as the kustomize overlays, sets the same
environment as the overlay for the same settings, and renders the same pods for the next chart
version, so `helm upgrade` restarts nothing it need not."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import test_kubernetes as overlays
from tests.deploy.processes import ROOT, env_problems, tool
from tests.deploy.test_kubernetes import (
    CHART_APPS,
    CHART_NAMES,
    KUBERNETES,
    KUBERNETES_VERSION,
    container,
    deployments,
    literal_env,
    render,
    scrape_annotations_problems,
    selectors,
    selects,
)

CHART = ROOT / "deploy" / "helm" / "ferry"
PRO = CHART / "values-openfaas-pro.yaml"
CE = CHART / "values-openfaas-ce.yaml"
PRODUCTION_NATS = CHART / "values-production-nats.yaml"
EVERYTHING = [
    "--set",
    "kafkaConnector.enabled=true,sqsConnector.enabled=true,nats.enabled=true",
    "--set",
    "console.enabled=true,basicAuth=true",
    "--set-string",
    "gateway.functions=functions: []",
]
# name -> helm arguments: the default values, each values file, and every component at once
VALUES: dict[str, list[str]] = {
    "default": [],
    "openfaas-pro": ["-f", str(PRO)],
    "openfaas-ce": ["-f", str(CE)],
    "production-nats": ["-f", str(PRO), "-f", str(PRODUCTION_NATS)],
    "everything": EVERYTHING,
}
# values -> the kustomize overlay with the same settings
SAME_AS_OVERLAY = {
    "openfaas-pro": "openfaas-pro",
    "openfaas-ce": "openfaas-ce",
    "production-nats": "production-nats",
}

Doc = dict[str, Any]


def helm(*args: str, chart: Path = CHART) -> str:
    done = subprocess.run(
        [tool("helm"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=chart.parent,
    )
    if done.returncode != 0:
        said = f"{done.stdout.strip()} {done.stderr.strip()}"
        raise AssertionError(f"helm {' '.join(args)} failed: {said}")
    return done.stdout


def template_text(values: list[str], chart: Path = CHART) -> str:
    return helm("template", "ferry", str(chart), "--namespace", "openfaas", *values, chart=chart)


def template(values: list[str], chart: Path = CHART) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(template_text(values, chart)) if doc]


RENDERED = {name: template(values) for name, values in VALUES.items()}
DEPLOYMENTS = [
    (f"{name}/{d['metadata']['name']}", d, docs)
    for name, docs in RENDERED.items()
    for d in deployments(docs)
]
IDS = [name for name, _, _ in DEPLOYMENTS]


def by_name(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_the_chart_has_a_values_file_per_openfaas_edition() -> None:
    assert {PRO.name, CE.name} <= {p.name for p in CHART.glob("values-*.yaml")}


@pytest.mark.parametrize("name", VALUES)
def test_helm_lint_passes(name: str) -> None:
    out = helm("lint", str(CHART), "--strict", *VALUES[name])
    assert "0 chart(s) failed" in out


def test_helm_lint_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "ferry"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("{{ .Values.nothing.here }}\n")
    with pytest.raises(AssertionError, match="nil pointer"):
        helm("lint", str(broken), "--strict", chart=broken)


@pytest.mark.parametrize("name", VALUES)
def test_renders_into_objects_kubernetes_accepts(name: str) -> None:
    docs = RENDERED[name]
    assert deployments(docs)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_component_can_be_switched_on_and_off() -> None:
    every = {d["metadata"]["name"] for d in deployments(RENDERED["everything"])}
    assert every == {
        f"ferry-{c}"
        for c in (
            "queue-worker",
            "gateway",
            "cron-connector",
            "kafka-connector",
            "sqs-connector",
            "console",
        )
    }
    assert ("StatefulSet", "ferry-nats") in by_name(RENDERED["everything"])
    off = [
        "--set",
        "queueWorker.enabled=false,gateway.enabled=false,cronConnector.enabled=false",
    ]
    assert template(off) == []


# The same rules as every Deployment of the kustomize overlays (tests/deploy/test_kubernetes.py)
SAME_RULES = [
    overlays.test_runs_a_process_with_an_environment_it_reads,
    overlays.test_kubernetes_waits_longer_than_the_drain,
    overlays.test_probes_hit_healthz_and_readyz_on_the_health_port,
    overlays.test_runs_as_non_root_read_only_without_privileges,
    overlays.test_has_requests_and_limits,
    overlays.test_has_a_metrics_service_and_a_disruption_budget,
]


@pytest.mark.parametrize("rule", SAME_RULES, ids=lambda f: f.__name__.removeprefix("test_"))
@pytest.mark.parametrize(("name", "deployment", "docs"), DEPLOYMENTS, ids=IDS)
def test_every_deployment_keeps_the_overlays_rules(
    rule: Any, name: str, deployment: Doc, docs: list[Doc]
) -> None:
    rule(name, deployment, docs)


@pytest.mark.parametrize(("name", "deployment", "docs"), DEPLOYMENTS, ids=IDS)
def test_every_pod_is_annotated_for_the_openfaas_charts_prometheus(
    name: str, deployment: Doc, docs: list[Doc]
) -> None:
    assert scrape_annotations_problems(deployment) == []


@pytest.mark.parametrize("name", VALUES)
def test_no_object_has_a_name_or_selector_the_openfaas_chart_owns(name: str) -> None:
    docs = RENDERED[name]
    names = {d["metadata"]["name"] for d in docs}
    assert names & CHART_NAMES == set()
    assert all(n.startswith("ferry-") for n in names)
    for doc in docs:
        for selector in selectors(doc):
            assert selector.get("app") not in CHART_APPS, doc["metadata"]["name"]
            assert selector["app"].startswith("ferry-")


@pytest.mark.parametrize("name", VALUES)
def test_every_selector_picks_the_pods_of_its_own_component_only(name: str) -> None:
    docs = RENDERED[name]
    workloads = [d for d in docs if d["kind"] in {"Deployment", "StatefulSet"}]
    for doc in docs:
        for selector in selectors(doc):
            picked = [w["metadata"]["name"] for w in workloads if selects(selector, w)]
            assert picked == [f"ferry-{selector['app'].removeprefix('ferry-')}"], doc


def _pod(doc: Doc) -> Doc:
    """What a workload runs, as both tools should render it for the same settings."""
    pod = doc["spec"]["template"]["spec"]
    c = pod["containers"][0]
    volumes = {v["name"]: {k: v[k] for k in v if k != "name"} for v in pod.get("volumes", [])}
    return {
        "replicas": doc["spec"].get("replicas"),
        "selector": doc["spec"]["selector"],
        "args": c.get("args"),
        "env": literal_env(c),
        "ports": {p["name"]: p["containerPort"] for p in c["ports"]},
        "mounts": {
            m["mountPath"]: volumes.get(m["name"], "a volume claim")
            for m in c.get("volumeMounts", [])
        },
        "resources": c["resources"],
        "pod security": pod["securityContext"],
        "security": c["securityContext"],
        "grace": pod.get("terminationGracePeriodSeconds"),
        "probes": [c.get(p) for p in ("livenessProbe", "readinessProbe", "startupProbe")],
        "scrape": {
            k: v
            for k, v in doc["spec"]["template"]["metadata"].get("annotations", {}).items()
            if k.startswith("prometheus.io/")
        },
    }


def _service(doc: Doc) -> Doc:
    return {"selector": doc["spec"].get("selector"), "ports": doc["spec"]["ports"]}


def _comparable(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
    out: dict[tuple[str, str], Doc] = {}
    for key, doc in by_name(docs).items():
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            out[key] = _pod(doc)
        elif doc["kind"] == "Service":
            out[key] = _service(doc)
        elif doc["kind"] == "PodDisruptionBudget":
            out[key] = doc["spec"]
    return out


@pytest.mark.parametrize("name", SAME_AS_OVERLAY)
def test_renders_what_the_kustomize_overlay_renders_for_the_same_settings(name: str) -> None:
    overlay = render(KUBERNETES / "overlays" / SAME_AS_OVERLAY[name])
    chart = _comparable(RENDERED[name])
    kustomize = _comparable(overlay)
    assert set(chart) == set(kustomize)
    for key in sorted(kustomize):
        assert chart[key] == kustomize[key], key


# the console's base carries the gateway's credentials (the process refuses to start without)
SWITCHED_ON = {
    "console": ["--set", "console.enabled=true,basicAuth=true"],
    "kafka-connector": ["--set", "kafkaConnector.enabled=true"],
    "sqs-connector": ["--set", "sqsConnector.enabled=true"],
}


@pytest.mark.parametrize(
    "process",
    ["queue-worker", "gateway", "cron-connector", "kafka-connector", "sqs-connector", "console"],
)
def test_the_default_values_set_the_environment_of_the_kustomize_base(process: str) -> None:
    [base] = deployments(render(KUBERNETES / "base" / process))
    chart = by_name(template(SWITCHED_ON.get(process, [])))[("Deployment", f"ferry-{process}")]
    assert literal_env(container(chart)) == literal_env(container(base))
    assert _pod(chart) == _pod(base)


def test_the_console_is_off_unless_asked_for_and_on_in_the_openfaas_values_files() -> None:
    assert ("Deployment", "ferry-console") not in by_name(RENDERED["default"])
    for name in ("openfaas-pro", "openfaas-ce"):
        docs = by_name(RENDERED[name])
        service = docs[("Service", "ferry-console")]
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 8090, "targetPort": "http", "protocol": "TCP"}
        ]
        assert selects(service["spec"]["selector"], docs[("Deployment", "ferry-console")])


def test_the_console_without_credentials_is_refused_at_render_naming_the_way_out() -> None:
    """The process would refuse to start; the chart says so before anything is applied."""
    with pytest.raises(
        AssertionError, match=r"needs basicAuth=true .*console\.env\.console_enabled=true"
    ):
        template(["--set", "console.enabled=true"])
    with pytest.raises(AssertionError, match="needs basicAuth=true"):
        template(
            ["--set", "console.enabled=true", "--set-string", "console.env.console_enabled=false"]
        )
    opened = by_name(
        template(
            ["--set", "console.enabled=true", "--set-string", "console.env.console_enabled=true"]
        )
    )
    c = container(opened[("Deployment", "ferry-console")])
    assert "basic_auth" not in literal_env(c)
    assert env_problems("console", literal_env(c)) == []


def test_a_console_on_another_port_is_served_and_exposed_there() -> None:
    docs = by_name(template(["--set", "console.enabled=true,basicAuth=true,console.port=9000"]))
    c = container(docs[("Deployment", "ferry-console")])
    assert literal_env(c)["port"] == "9000"
    assert {"name": "http", "containerPort": 9000, "protocol": "TCP"} in c["ports"]
    [port] = docs[("Service", "ferry-console")]["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (9000, "http")


def test_the_comparison_can_fail() -> None:
    ce = _comparable(RENDERED["openfaas-ce"])
    pro = _comparable(RENDERED["openfaas-pro"])
    key = ("Deployment", "ferry-queue-worker")
    assert ce[key]["env"]["nats_url"] != pro[key]["env"]["nats_url"]


def _pods_and_selectors(docs: list[Doc]) -> dict[tuple[str, str], Any]:
    return {
        key: (doc.get("spec", {}).get("selector"), doc.get("spec", {}).get("template"))
        for key, doc in by_name(docs).items()
    }


@pytest.mark.parametrize("name", VALUES)
def test_the_next_chart_version_renders_the_same_pods_and_selectors(
    name: str, tmp_path: Path
) -> None:
    """`helm upgrade` to a new chart version restarts no pod and replaces no object whose
    settings did not change: the chart's version is only in object labels."""
    nxt = tmp_path / "ferry"
    shutil.copytree(CHART, nxt)
    meta = yaml.safe_load((nxt / "Chart.yaml").read_text())
    meta["version"] = "9.9.9"
    (nxt / "Chart.yaml").write_text(yaml.safe_dump(meta))
    values = [a.replace(str(CHART), str(nxt)) for a in VALUES[name]]
    upgraded = template(values, chart=nxt)
    assert "ferry-9.9.9" in yaml.safe_dump(upgraded)
    assert _pods_and_selectors(upgraded) == _pods_and_selectors(RENDERED[name])


def test_rendering_is_the_same_every_time() -> None:
    """No random value and no clock in a template: a re-render (every `helm upgrade`) with the
    same values gives the same objects."""
    assert template_text(EVERYTHING) == template_text(EVERYTHING)
    source = "".join(p.read_text() for p in (CHART / "templates").iterdir())
    code = re.sub(r"{{-? */\*.*?\*/ *-?}}", "", source, flags=re.DOTALL)
    assert "/*" not in code
    assert re.findall(r"\b(rand\w*|now|uuidv4|gen[A-Z]\w*|lookup)\b", code) == []


def test_a_new_functions_file_rolls_only_the_front_door() -> None:
    one = by_name(template(["--set-string", "gateway.functions=functions: []"]))
    two = by_name(template(["--set-string", "gateway.functions=functions: [{name: a}]"]))
    key = ("Deployment", "ferry-gateway")
    before = one[key]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    after = two[key]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert before != after
    assert one[("ConfigMap", "ferry-functions")] != two[("ConfigMap", "ferry-functions")]
    for other in ("ferry-queue-worker", "ferry-cron-connector"):
        assert one[("Deployment", other)] == two[("Deployment", other)]


def test_credentials_come_from_secrets_never_from_values() -> None:
    docs = RENDERED["production-nats"] + RENDERED["openfaas-ce"]
    assert not [d for d in docs if d["kind"] == "Secret"]
    for deployment in deployments(docs):
        env = literal_env(container(deployment))
        for name, value in env.items():
            if name.startswith("nats_") and name.endswith("_file"):
                mounts = container(deployment)["volumeMounts"]
                assert any(value.startswith(m["mountPath"] + "/") for m in mounts), name
        assert not {"basic-auth-password", "nats_token", "nats_password"} & set(env)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("queueWorker.maxInflght=5", "Additional property maxInflght is not allowed"),
        ("logs.format=text", "logs.format must be one of"),
        ("gateway.replicas=-1", "gateway.replicas"),
    ],
)
def test_a_mistyped_or_wrong_value_is_refused_naming_it(setting: str, named: str) -> None:
    """A typo would otherwise be dropped in silence, and the setting believed in force."""
    with pytest.raises(AssertionError, match=re.escape(named)):
        template(["--set", setting])

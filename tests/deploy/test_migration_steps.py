"""The steps in docs/migrating-from-openfaas.md name overlays and Helm values files that exist
and render, every `helm` command for ferry's chart in the docs renders with the real helm, and
every object a `kubectl` step names (`deploy/ferry-queue-worker`, `statefulset/ferry-nats`, ...)
is one that both the overlays and the chart with those values files create."""

from __future__ import annotations

import re
import shlex

import yaml

from tests.deploy.processes import ROOT, kustomize
from tests.deploy.test_helm import template

PAGE = ROOT / "docs" / "migrating-from-openfaas.md"
KINDS = {"deploy": "Deployment", "statefulset": "StatefulSet", "svc": "Service"}
_OVERLAY = re.compile(r"deploy/kubernetes/overlays/([\w-]+)")
_VALUES = re.compile(r"deploy/helm/ferry/(values-[\w-]+\.yaml)")
_OBJECT = re.compile(r"kubectl -n openfaas [^\n`]*?\b(deploy|statefulset|svc)/([\w-]+)")
_HELM = re.compile(r"^\s*helm (?:upgrade --install|template) ferry deploy/helm/ferry (.*)$", re.M)


def rendered(overlay: str) -> list[dict[str, object]]:
    folder = ROOT / "deploy" / "kubernetes" / "overlays" / overlay
    return [doc for doc in yaml.safe_load_all(kustomize(folder)) if doc]


def helm_commands(text: str) -> list[list[str]]:
    """The arguments after `deploy/helm/ferry` of each helm command for ferry's chart."""
    return [shlex.split(rest.split("|", 1)[0].split(" #", 1)[0]) for rest in _HELM.findall(text)]


def test_the_page_names_both_openfaas_overlays_and_values_files() -> None:
    text = PAGE.read_text()
    assert set(_OVERLAY.findall(text)) == {"openfaas-ce", "openfaas-pro"}
    assert set(_VALUES.findall(text)) == {"values-openfaas-ce.yaml", "values-openfaas-pro.yaml"}


def test_every_helm_command_in_the_docs_renders() -> None:
    commands = [
        args
        for page in (PAGE, ROOT / "docs" / "production-nats.md", ROOT / "docs" / "deploy.md")
        for args in helm_commands(page.read_text())
    ]
    assert len(commands) >= 6
    for args in commands:
        values = [a.replace("deploy/helm/ferry/", f"{ROOT}/deploy/helm/ferry/") for a in args]
        assert template(values), args


def test_every_object_a_kubectl_step_names_is_created_by_an_overlay_and_by_the_chart() -> None:
    text = PAGE.read_text()
    named = set(_OBJECT.findall(text))
    assert {("deploy", "ferry-queue-worker"), ("statefulset", "ferry-nats")} <= named
    by_overlays = {
        (doc["kind"], doc["metadata"]["name"])  # type: ignore[index]
        for overlay in set(_OVERLAY.findall(text))
        for doc in rendered(overlay)
    }
    by_chart = {
        (doc["kind"], doc["metadata"]["name"])
        for values in set(_VALUES.findall(text))
        for doc in template(["-f", str(ROOT / "deploy" / "helm" / "ferry" / values)])
    }
    for created in (by_overlays, by_chart):
        missing = sorted(f"{k}/{n}" for k, n in named if (KINDS[k], n) not in created)
        assert missing == []


def test_nats_is_installed_beside_openfaas_only_after_the_chart_lets_go_of_its_nats() -> None:
    """In namespace openfaas the OpenFaaS chart owns the Service `nats` unless
    nats.external.enabled=true: a `helm install nats` there must come after that setting."""
    text = (ROOT / "docs" / "production-nats.md").read_text()
    install = text.index("helm install nats nats/nats -n openfaas")
    assert "--set nats.external.enabled=true" in text[:install]


def test_the_docs_name_no_openfaas_chart_value_that_does_not_exist() -> None:
    pages = [PAGE, ROOT / "docs" / "production-nats.md", ROOT / "docs" / "deploy.md"]
    for page in pages:
        assert "nats.authorization" not in page.read_text(), page.name


def _row(name: str) -> str:
    [row] = [line for line in PAGE.read_text().splitlines() if line.startswith(f"| `{name}`")]
    return row


def test_the_settings_tables_do_not_call_a_different_setting_the_same() -> None:
    # OpenFaaS's cron-connector bounds a listing with it; ferry reads it as rebuild_interval
    assert "| same |" not in _row("rebuild_timeout")
    assert "remove it" in _row("rebuild_timeout")
    # set by the CE chart, but not acted on by CE's current worker
    for name in ("max_inflight", "basic_auth"):
        assert "| ferry only |" in _row(name)

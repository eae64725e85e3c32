"""The steps in docs/migrating-from-openfaas.md name overlays that exist and render, and every
object a `kubectl` step names (`deploy/ferry-queue-worker`, `statefulset/ferry-nats`, ...) is
one those overlays create."""

from __future__ import annotations

import re

import yaml

from tests.deploy.processes import ROOT, kustomize

PAGE = ROOT / "docs" / "migrating-from-openfaas.md"
KINDS = {"deploy": "Deployment", "statefulset": "StatefulSet", "svc": "Service"}
_OVERLAY = re.compile(r"deploy/kubernetes/overlays/([\w-]+)")
_OBJECT = re.compile(r"kubectl -n openfaas [^\n`]*?\b(deploy|statefulset|svc)/([\w-]+)")


def rendered(overlay: str) -> list[dict[str, object]]:
    folder = ROOT / "deploy" / "kubernetes" / "overlays" / overlay
    return [doc for doc in yaml.safe_load_all(kustomize(folder)) if doc]


def test_the_page_names_both_openfaas_overlays() -> None:
    assert set(_OVERLAY.findall(PAGE.read_text())) == {"openfaas-ce", "openfaas-pro"}


def test_every_object_a_kubectl_step_names_is_created_by_an_overlay() -> None:
    created = {
        (doc["kind"], doc["metadata"]["name"])  # type: ignore[index]
        for overlay in set(_OVERLAY.findall(PAGE.read_text()))
        for doc in rendered(overlay)
    }
    named = set(_OBJECT.findall(PAGE.read_text()))
    assert {("deploy", "ferry-queue-worker"), ("statefulset", "ferry-nats")} <= named
    missing = sorted(f"{k}/{n}" for k, n in named if (KINDS[k], n) not in created)
    assert missing == []

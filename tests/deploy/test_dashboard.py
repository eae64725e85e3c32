"""The Grafana dashboard queries only metrics ferry exports: real processes are started against
the session's brokers and their /metrics pages scraped. It also shows what an operator needs
(throughput, failures, retries, dead letters, capacity, lag, callbacks, latency)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.deploy.processes import ROOT
from tests.deploy.promql import exported_names, metric_names
from tests.support.brokers import NatsServer
from tests.support.http import FakeGateway
from tests.support.kafka import GROUP_TIMING, KafkaTopic, TansuBroker
from tests.support.moto import MotoServer, Queues
from tests.support.ports import eventually, free_port
from tests.support.procs import FerryProcess

DASHBOARDS = sorted((ROOT / "deploy" / "grafana").rglob("*.json"))


def dashboard(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def expressions(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p.get("targets", []) if "expr" in t]


def queried(board: dict[str, Any]) -> set[str]:
    return {name for expr in expressions(board) for name in metric_names(expr)}


async def scrape(port: int, prefix: str) -> str:
    """The /metrics page once the process's own families are on it."""

    async def page() -> str:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/metrics") as response,
            ):
                text = await response.text()
                return text if response.status == 200 and f"# TYPE {prefix}" in text else ""
        except aiohttp.ClientError:
            return ""

    text: str = await eventually(page, 30, 0.2, what=f"{prefix}* metrics on port {port}")
    return text


def process(command: str, health_port: int, **env: str) -> FerryProcess:
    return FerryProcess(
        command,
        {
            **env,
            "health_port": str(health_port),
            "health_host": "127.0.0.1",
            "graceful_timeout": "2s",
            "print_response": "false",
        },
    )


@pytest.fixture(scope="module")
async def exported(
    nats_server: NatsServer, tansu: TansuBroker, moto_server: MotoServer, tmp_path_factory: Any
) -> AsyncIterator[set[str]]:
    """Every series name the queue worker, the gateway and the three connectors export."""
    tag = uuid.uuid4().hex[:8]
    gateway = await FakeGateway().start()
    functions = tmp_path_factory.mktemp("functions") / "functions.yml"
    functions.write_text(f"functions:\n  - name: echo\n    url: {gateway.url}/function/echo\n")
    topic = await KafkaTopic(tansu).create()
    async with moto_server.sqs() as sqs:
        queue_url = await Queues(sqs, "dash").create("events")
    nats = {
        "nats_url": nats_server.url,
        "nats_stream": f"faas-request-{tag}",
        "dead_letter_stream": f"faas-dead-letter-{tag}",
    }
    ports = {name: free_port() for name in ("qw", "gw", "cron", "kafka", "sqs")}
    running = [
        (process("queue-worker", ports["qw"], gateway_url=gateway.url, **nats), "queue_worker_"),
        (
            process(
                "gateway",
                ports["gw"],
                functions_file=str(functions),
                port=str(free_port()),
                listen_host="127.0.0.1",
                **nats,
            ),
            "gateway_",
        ),
        (process("cron-connector", ports["cron"], gateway_url=gateway.url), "cron_"),
        (
            process(
                "kafka-connector",
                ports["kafka"],
                gateway_url=gateway.url,
                **topic.env(**GROUP_TIMING),
            ),
            "kafka_connector_",
        ),
        (
            process(
                "sqs-connector",
                ports["sqs"],
                gateway_url=gateway.url,
                queue_url=queue_url,
                endpoint_url=moto_server.url,
                AWS_REGION="us-east-1",
                wait_time="1s",
            ),
            "sqs_",
        ),
    ]
    try:
        for proc, _ in running:
            await proc.start()
        pages = await asyncio.gather(
            *(scrape(int(proc.env["health_port"]), prefix) for proc, prefix in running)
        )
        yield set().union(*(exported_names(page) for page in pages))
    finally:
        for proc, _ in running:
            await proc.close()
        await topic.close()
        await gateway.stop()


def alert_expressions() -> list[str]:
    """The `expr` of every alerting rule in the YAML blocks of docs/operating.md."""
    text = (ROOT / "docs" / "operating.md").read_text()
    exprs: list[str] = []
    for block in re.findall(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        loaded = yaml.safe_load(block)
        for group in loaded.get("groups", []) if isinstance(loaded, dict) else []:
            exprs.extend(rule["expr"] for rule in group["rules"])
    return exprs


@pytest.mark.slow
def test_the_documented_alerts_use_only_metrics_ferry_exports(exported: set[str]) -> None:
    exprs = alert_expressions()
    assert len(exprs) >= 5
    names = {name for expr in exprs for name in metric_names(expr)}
    assert sorted(names - exported - {"up"}) == []


def test_there_is_a_dashboard() -> None:
    assert [p.name for p in DASHBOARDS] == ["ferry.json"]


@pytest.mark.slow
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_queried_metric_is_one_ferry_exports(path: Path, exported: set[str]) -> None:
    names = queried(dashboard(path))
    assert names, "no metric names found in the dashboard's queries"
    assert sorted(names - exported) == []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_shows_what_an_operator_needs(path: Path) -> None:
    names = queried(dashboard(path))
    for family in ("queue_worker", "connector"):
        assert {
            f"{family}_retries_total",
            f"{family}_dead_letters_total",
            f"{family}_invocation_duration_seconds_bucket",
        } <= names
    assert {"queue_worker_messages_processed_total", "connector_invocations_total"} <= names
    assert {"queue_worker_function_invocation_inflight", "queue_worker_max_inflight"} <= names
    assert {"connector_invocation_inflight", "connector_max_inflight"} <= names
    assert {"queue_worker_pending_messages", "connector_consumer_lag"} <= names
    assert "queue_worker_callbacks_total" in names
    assert "queue_worker_call_ledger_write_failures_total" in names
    # fair mode, per function: backlog, limit beside in flight, throttling
    assert {
        "queue_worker_function_limit",
        "queue_worker_function_inflight",
        "queue_worker_function_throttled_total",
    } <= names
    exprs = " ".join(expressions(dashboard(path)))
    assert "by (function_name) (queue_worker_pending_messages" in exprs
    assert exprs.count("histogram_quantile(") >= 6


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_reads_the_datasource_variable(path: Path) -> None:
    board = dashboard(path)
    assert any(v["type"] == "datasource" for v in board["templating"]["list"])
    for panel in panels(board):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_have_unique_ids_and_do_not_overlap(path: Path) -> None:
    board = dashboard(path)
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    boxes = [p["gridPos"] for p in panels(board)]
    for i, a in enumerate(boxes):
        assert a["x"] + a["w"] <= 24
        for b in boxes[i + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, (a, b)

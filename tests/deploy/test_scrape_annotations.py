"""What the OpenFaaS chart's Prometheus would scrape is ferry's real /metrics page: the chart is
rendered with the OpenFaaS Pro values, each ferry process is started with exactly the
environment its Deployment sets (only the addresses of NATS, the gateway and the mounted
secret are this machine's), and the page at the pod's `prometheus.io/port` and
`prometheus.io/path` answers with the process's own metrics."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.deploy.test_helm import PRO, by_name, template
from tests.deploy.test_kubernetes import container, literal_env
from tests.support.brokers import NatsServer
from tests.support.http import FakeGateway
from tests.support.ports import eventually, free_port
from tests.support.procs import FerryProcess


async def _page(url: str, family: str) -> str:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
            return text if response.status == 200 and f"# TYPE {family}" in text else ""
    except aiohttp.ClientError:
        return ""


@pytest.mark.parametrize(
    ("process", "family"),
    [("queue-worker", "queue_worker_"), ("cron-connector", "cron_")],
)
async def test_the_annotated_port_and_path_serve_the_processes_metrics(
    process: str, family: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    port = free_port()
    docs = template(["-f", str(PRO), "--set", f"healthPort={port}"])
    deployment = by_name(docs)[("Deployment", f"ferry-{process}")]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    env = literal_env(container(deployment))
    # the mounted basic-auth secret, as Kubernetes would mount it
    (tmp_path / "basic-auth-user").write_text("admin")
    (tmp_path / "basic-auth-password").write_text("secret")
    gateway = await FakeGateway().start()
    tag = uuid.uuid4().hex[:8]
    here = {
        "nats_url": nats_server.url,
        "gateway_url": gateway.url,
        "secret_mount_path": str(tmp_path),
        "graceful_timeout": "2s",
    }
    if process == "queue-worker":
        here |= {
            "nats_stream": f"faas-request-{tag}",
            "nats_durable": f"faas-workers-{tag}",
            "dead_letter_stream": f"faas-dead-letter-{tag}",
        }
    assert set(here) - {"dead_letter_stream"} <= set(env)  # only addresses are replaced
    running = await FerryProcess(process, {**env, **here}).start()
    try:
        url = f"http://127.0.0.1:{annotations['prometheus.io/port']}"
        url += annotations["prometheus.io/path"]
        page = await eventually(lambda: _page(url, family), 30, 0.2, what=f"{url} of {process}")
        assert f"# TYPE {family}" in page
    finally:
        await running.close()
        await gateway.stop()

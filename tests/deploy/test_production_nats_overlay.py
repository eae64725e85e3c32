"""The production-nats overlay gives every ferry process in it the cluster's server list,
replicated streams and the credentials file from a mounted secret."""

from __future__ import annotations

from pathlib import PurePosixPath

from connectors.core.settings import load_settings
from tests.deploy.processes import process_configs
from tests.deploy.test_kubernetes import KUBERNETES, container, deployments, literal_env, render


def test_every_process_gets_the_server_list_three_replicas_and_a_mounted_creds_file() -> None:
    found = deployments(render(KUBERNETES / "overlays" / "production-nats"))
    assert {container(d)["args"][0] for d in found} >= {"queue-worker", "cron-connector"}
    for deployment in found:
        c = container(deployment)
        config = load_settings(process_configs()[c["args"][0]], literal_env(c))
        assert len(config.nats.servers) == 3
        assert config.nats.nats_stream_replicas == 3
        creds = PurePosixPath(config.nats.nats_credentials_file)
        [mount] = [m for m in c["volumeMounts"] if PurePosixPath(m["mountPath"]) == creds.parent]
        assert mount["readOnly"] is True
        [volume] = [
            v
            for v in deployment["spec"]["template"]["spec"]["volumes"]
            if v["name"] == mount["name"]
        ]
        assert volume["secret"]["secretName"] == "ferry-nats"

"""A real 3-node JetStream cluster on loopback: kill a node, restart it, find a stream's leader.

Three `nats-server -js` processes, each with its own client, cluster and monitoring port and
its own store folder, routed to each other under one cluster name. R3 streams may be created
once `/jsz` on a monitoring port reports a meta leader (`wait_until_formed`).
"""

from __future__ import annotations

import json
import shutil
import signal
import urllib.request
import uuid
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig

from tests.support.brokers import NatsServer
from tests.support.ports import eventually, free_port

CLUSTER_NAME = "ferry-test"


@dataclass
class NatsNode(NatsServer):
    name: str = ""
    cluster_port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    routes: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return [
            *super().command(),
            "-m",
            str(self.monitor_port),
            "--server_name",
            self.name,
            "--cluster_name",
            CLUSTER_NAME,
            "--cluster",
            f"nats://127.0.0.1:{self.cluster_port}",
            "--routes",
            ",".join(self.routes),
        ]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients or to the other nodes."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def jsz(self) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.monitor_port}/jsz"
        with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
            data: dict[str, object] = json.load(response)
            return data


async def _places_r3(nc: Client) -> bool:
    js = nc.jetstream(timeout=2)
    name = f"probe-{uuid.uuid4().hex[:8]}"
    config = StreamConfig(name=name, subjects=[name], num_replicas=3, storage=StorageType.MEMORY)
    try:
        await js.add_stream(config)
        await js.delete_stream(name)
    except (nats.errors.Error, TimeoutError):
        return False
    return True


class NatsCluster:
    def __init__(self, size: int = 3) -> None:
        self.nodes = [NatsNode(name=f"n{i + 1}") for i in range(size)]
        for node in self.nodes:
            node.routes = tuple(
                f"nats://127.0.0.1:{other.cluster_port}"
                for other in self.nodes
                if other is not node
            )

    @property
    def url(self) -> str:
        """The seed list as an operator writes it in `nats_url`."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> NatsCluster:
        for node in self.nodes:
            node.start()
        return self

    def node(self, name: str) -> NatsNode:
        [found] = [n for n in self.nodes if n.name == name]
        return found

    def by_port(self, port: int) -> NatsNode:
        [found] = [n for n in self.nodes if n.port == port]
        return found

    def _meta_leader(self) -> str:
        """The meta leader's name once it sees every running node as a current peer."""
        running = {n.name for n in self.nodes if n.running}
        for node in self.nodes:
            if not node.running:
                continue
            try:
                meta = node.jsz().get("meta_cluster")
            except OSError:
                continue
            if not isinstance(meta, dict) or meta.get("leader") != node.name:
                continue
            peers = {
                p["name"]
                for p in meta.get("replicas") or []
                if p.get("current") and not p.get("offline")
            }
            if running <= peers | {node.name}:
                return node.name
        return ""

    async def wait_until_formed(self, timeout: float = 30.0) -> str:
        """Wait for a JetStream meta leader that has every running node as a current peer, and
        until it places an R3 stream (a restarted node is "current" a little before that)."""
        leader: str = await eventually(self._meta_leader, timeout, 0.2, what="a formed cluster")
        nc = await nats.connect([n.url for n in self.nodes if n.running])
        try:
            await eventually(lambda: _places_r3(nc), timeout, 0.2, what="an R3 stream placed")
        finally:
            await nc.close()
        return leader

    async def heal(self) -> None:
        """Restart every node a test killed and wait for the cluster to form again."""
        for node in self.nodes:
            if not node.running:
                node.start()
        await self.wait_until_formed()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
            shutil.rmtree(node.store, ignore_errors=True)

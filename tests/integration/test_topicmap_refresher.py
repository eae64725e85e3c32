"""The topic map follows the gateway, and a failed rebuild keeps the last good map."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from connectors.core.config import GatewaySettings
from connectors.core.gateway import GatewayClient
from connectors.core.topicmap import TopicMap, TopicMapRefresher
from tests.support.http import FakeGateway
from tests.support.ports import eventually

INTERVAL = 0.3


def refresher_for(gateway: FakeGateway, failures: list[str]) -> TopicMapRefresher:
    client = GatewayClient(GatewaySettings(gateway_url=gateway.url), max_inflight=4)
    return TopicMapRefresher(client, interval=INTERVAL, on_failure=failures.append)


def names(found: TopicMap, topic: str) -> list[str]:
    return [fn.qualified for fn in found.match(topic)]


async def test_a_function_annotated_later_is_picked_up_by_the_next_rebuild(
    gateway: FakeGateway,
) -> None:
    gateway.subscribe("first", "orders")
    refresher = refresher_for(gateway, [])
    assert await refresher.refresh()
    assert names(refresher.current, "orders") == ["first.openfaas-fn"]
    running = asyncio.create_task(refresher.run())
    try:
        gateway.subscribe("late", "orders, audit")
        await eventually(
            lambda: "late.openfaas-fn" in names(refresher.current, "audit"),
            INTERVAL * 3,
            what="the late function in the map",
        )
        assert names(refresher.current, "orders") == ["first.openfaas-fn", "late.openfaas-fn"]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await refresher.client.close()


async def test_a_rebuild_while_the_gateway_is_down_keeps_the_old_map() -> None:
    gateway = await FakeGateway().start()
    gateway.subscribe("fn", "orders")
    failures: list[str] = []
    refresher = refresher_for(gateway, failures)
    try:
        assert await refresher.refresh()
        before = refresher.current
        await gateway.stop()
        assert not await refresher.refresh()
        assert refresher.current is before
        assert names(refresher.current, "orders") == ["fn.openfaas-fn"]
        assert len(failures) == 1
    finally:
        await refresher.client.close()


async def test_with_basic_auth_the_function_list_is_read_with_the_admin_credentials(
    gateway: FakeGateway, tmp_path: Path
) -> None:
    (tmp_path / "basic-auth-user").write_text("admin\n")
    (tmp_path / "basic-auth-password").write_text("s3cret\n")
    gateway.subscribe("fn", "orders")
    settings = GatewaySettings(
        gateway_url=gateway.url, basic_auth=True, secret_mount_path=str(tmp_path)
    )
    refresher = TopicMapRefresher(GatewayClient(settings, max_inflight=4), interval=INTERVAL)
    try:
        assert await refresher.refresh()
    finally:
        await refresher.client.close()
    expected = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    assert gateway.system_authorizations
    assert set(gateway.system_authorizations) == {expected}
    assert names(refresher.current, "orders") == ["fn.openfaas-fn"]

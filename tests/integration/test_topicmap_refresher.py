"""The topic map follows the gateway, and a failed rebuild keeps the last good map."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

import pytest

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


async def test_a_malformed_entry_is_skipped_once_logged_and_later_changes_still_apply(
    gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.subscribe("good", "orders")
    gateway.raw_entries = [{"name": "bad", "annotations": ["topic"]}]
    skipped: list[int] = []
    client = GatewayClient(GatewaySettings(gateway_url=gateway.url), max_inflight=4)
    refresher = TopicMapRefresher(
        client, interval=INTERVAL, on_rebuild=lambda m: skipped.append(len(m.skipped))
    )
    caplog.set_level(logging.WARNING, logger="connectors.core.topicmap")
    running = asyncio.create_task(refresher.run(first_retry=0.05))
    try:
        await eventually(lambda: refresher.rebuilt_once, 10, what="the first map")
        assert names(refresher.current, "orders") == ["good.openfaas-fn"]
        gateway.raw_entries.append({"name": "worse", "labels": "x", "namespace": 3})
        gateway.subscribe("late", "orders")
        await eventually(
            lambda: "late.openfaas-fn" in names(refresher.current, "orders"),
            INTERVAL * 10,
            what="a change after the malformed entries",
        )
        await eventually(lambda: len(skipped) >= 6, INTERVAL * 20, what="more rebuilds")
        assert not running.done()
        assert skipped[-1] == 2
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await client.close()
    warnings = [r.getMessage() for r in caplog.records if "entry skipped" in r.getMessage()]
    assert len([w for w in warnings if "bad" in w]) == 1, warnings
    assert len([w for w in warnings if "worse" in w]) == 1, warnings


async def test_at_start_up_a_malformed_entry_does_not_stop_the_first_map(
    gateway: FakeGateway,
) -> None:
    for entry in ({"name": "a", "annotations": "t"}, {"name": "b", "annotations": 1}, ["x"]):
        gateway.raw_entries.append(entry)
    gateway.subscribe("good", "orders")
    refresher = refresher_for(gateway, [])
    try:
        assert await refresher.refresh()
    finally:
        await refresher.client.close()
    assert names(refresher.current, "orders") == ["good.openfaas-fn"]
    assert len(refresher.current.skipped) == 3


async def test_an_unchanged_answer_is_not_rebuilt_and_a_changed_one_is(
    gateway: FakeGateway,
) -> None:
    gateway.subscribe("fn", "orders")
    refresher = refresher_for(gateway, [])
    try:
        assert await refresher.refresh()
        first = refresher.current
        assert await refresher.refresh()
        assert await refresher.refresh()
        assert refresher.builds == 1
        assert refresher.current is first
        gateway.subscribe("fn", "orders,audit")
        assert await refresher.refresh()
        assert refresher.builds == 2
        assert names(refresher.current, "audit") == ["fn.openfaas-fn"]
    finally:
        await refresher.client.close()


async def test_namespaces_that_are_not_labels_are_skipped_and_never_queried(
    gateway: FakeGateway,
) -> None:
    gateway.namespaces = ["a&namespace=b", None, 7, "b\ud800", "b"]
    gateway.subscribe("odd", "orders", namespace="a&namespace=b")
    gateway.subscribe("plain", "orders", namespace="b")
    refresher = refresher_for(gateway, [])
    try:
        assert await refresher.refresh()
    finally:
        await refresher.client.close()
    assert names(refresher.current, "orders") == ["plain.b"]
    assert len(refresher.current.skipped) == 4
    assert not any(fn.namespace in {"None", "7"} for fn in refresher.current.functions)


async def test_a_function_list_answer_over_the_bound_is_a_failed_rebuild(
    gateway: FakeGateway,
) -> None:
    gateway.subscribe("fn", "orders")
    failures: list[str] = []
    client = GatewayClient(GatewaySettings(gateway_url=gateway.url), max_inflight=4)
    refresher = TopicMapRefresher(
        client, interval=INTERVAL, on_failure=failures.append, max_answer_bytes=200
    )
    try:
        assert await refresher.refresh()
        gateway.subscribe("other", "orders," + "x" * 200)
        assert not await refresher.refresh()
    finally:
        await refresher.client.close()
    assert "answers over 200 bytes for all namespaces" in failures[0]
    assert names(refresher.current, "orders") == ["fn.openfaas-fn"]


async def test_the_answer_bound_holds_for_all_namespaces_together(gateway: FakeGateway) -> None:
    gateway.subscribe("one", "orders," + "x" * 150, namespace="a")
    gateway.subscribe("two", "orders," + "y" * 150, namespace="b")
    failures: list[str] = []
    client = GatewayClient(GatewaySettings(gateway_url=gateway.url), max_inflight=4)
    refresher = TopicMapRefresher(
        client, interval=INTERVAL, on_failure=failures.append, max_answer_bytes=300
    )
    try:
        assert not await refresher.refresh()
    finally:
        await refresher.client.close()
    assert "namespace=b: answers over 300 bytes for all namespaces" in failures[0]

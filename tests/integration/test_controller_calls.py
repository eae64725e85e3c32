"""What a function receives from a connector's controller: the event's body and headers, and
ferry's own, each once; the body logged when print_request_body is set."""

from __future__ import annotations

import logging

import pytest

from connectors.core.connector_config import ConnectorSettings
from connectors.core.delivery import Event
from connectors.core.version import USER_AGENT
from tests.support.controller import controller_for
from tests.support.http import FakeGateway


async def test_a_call_carries_the_events_headers_and_ferrys_own_each_once(
    gateway: FakeGateway,
) -> None:
    gateway.function("fn")
    gateway.subscribe("fn", "orders")
    event = Event(
        "orders",
        b"payload",
        headers=(("X-Kafka-Key", "k1"), ("X-Kafka-Offset", "7")),
        call_id="orders-0-7",
    )
    async with controller_for(gateway) as under_test:
        for _ in range(2):  # the second call uses what was prepared for the function
            (delivery,) = await under_test.controller.dispatch(event)
            assert delivery.ok
    for call in gateway.calls_to("fn"):
        assert call.method == "POST"
        assert call.path == ""
        assert call.body == b"payload"
        sent = {name: call.headers.getall(name) for name in call.headers}
        assert sent["X-Topic"] == ["orders"]
        assert sent["X-Connector"] == ["test"]
        assert sent["Content-Type"] == ["text/plain"]
        assert sent["User-Agent"] == [USER_AGENT]
        assert sent["X-Call-Id"] == ["orders-0-7"]
        assert sent["X-Kafka-Key"] == ["k1"]
        assert sent["X-Kafka-Offset"] == ["7"]
        assert "X-Callback-Url" not in sent
    assert len(gateway.calls_to("fn")) == 2


async def test_print_request_body_logs_each_attempts_body(
    gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.function("fn")
    gateway.subscribe("fn", "orders")
    caplog.set_level(logging.INFO, logger="ferry.invoker")
    async with controller_for(gateway, print_request_body=True) as under_test:
        await under_test.controller.dispatch(Event("orders", b"the body"))
    shown = [r.getMessage() for r in caplog.records if "request body" in r.getMessage()]
    assert shown == ["fn.openfaas-fn request body: the body"]


@pytest.mark.parametrize(
    "content_type", ["text/plain\r\nX-Forged: 1", "text/\x00plain", "text/plain\ud800"]
)
async def test_ferrys_own_headers_that_would_break_the_request_fail_each_call_unsent(
    gateway: FakeGateway, content_type: str
) -> None:
    """The headers every call of a function carries are checked and encoded once; when they
    cannot be sent (a content_type holding a line break, a NUL, or text that is not UTF-8),
    each call fails as unsendable, final, and nothing reaches the function."""
    gateway.function("fn")
    gateway.subscribe("fn", "orders")
    settings = ConnectorSettings(content_type=content_type)
    async with controller_for(gateway, settings=settings) as under_test:
        for _ in range(2):
            (delivery,) = await under_test.controller.dispatch(Event("orders", b"payload"))
            assert not delivery.ok
            assert delivery.outcome.final
            assert "cannot be sent" in delivery.outcome.reason
            assert delivery.result.attempt == 1  # not retried: it would fail the same way
    assert gateway.calls_to("fn") == []

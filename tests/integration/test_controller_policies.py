"""A function's retry annotations are read once per topic map, and a changed one counts."""

from __future__ import annotations

from aiohttp import web

from connectors.core.config import RetrySettings
from connectors.core.delivery import Event
from connectors.core.retry import ANNOTATION_ATTEMPTS
from tests.support.controller import controller_for
from tests.support.http import FakeGateway


async def test_a_changed_retry_annotation_takes_effect_once_the_topic_map_is_rebuilt(
    gateway: FakeGateway,
) -> None:
    gateway.function("fn", lambda call: web.Response(status=503))
    gateway.subscribe("fn", "orders", **{ANNOTATION_ATTEMPTS: "1"})
    quick = RetrySettings(max_retry_attempts=5, initial_retry_wait=0.001, max_retry_wait=0.001)
    async with controller_for(gateway, quick) as under_test:
        (first,) = await under_test.controller.dispatch(Event("orders", b"x"))
        assert not first.ok
        assert len(gateway.calls_to("fn")) == 1

        gateway.subscribe("fn", "orders", **{ANNOTATION_ATTEMPTS: "3"})
        assert await under_test.topics.refresh()
        (second,) = await under_test.controller.dispatch(Event("orders", b"x"))
        assert not second.ok
        assert second.result.attempt == 3
        assert len(gateway.calls_to("fn")) == 1 + 3

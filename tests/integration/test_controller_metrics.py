"""The controller's metrics keep their names and meaning on the per-message fast path."""

from __future__ import annotations

import asyncio

from connectors.core.delivery import Event
from tests.support.controller import controller_for
from tests.support.http import FakeGateway, held_until
from tests.support.ports import eventually


async def test_inflight_counts_the_invocations_under_way_and_counters_count_each_event(
    gateway: FakeGateway,
) -> None:
    release = asyncio.Event()
    gateway.function("fn", held_until(release))
    gateway.subscribe("fn", "orders")
    async with controller_for(gateway) as under_test:
        controller = under_test.controller

        def sample(name: str, **labels: str) -> float | None:
            return under_test.registry.get_sample_value(name, labels)

        try:
            running = [
                asyncio.create_task(controller.dispatch(Event("orders", b"x"))) for _ in "ab"
            ]
            await eventually(lambda: len(gateway.calls_to("fn")) == 2, 10, what="both held")
            assert sample("connector_invocation_inflight") == 2
            release.set()
            await asyncio.gather(*running)
            await controller.dispatch(Event("nobody-listens", b"x"))
            assert sample("connector_invocation_inflight") == 0
            assert sample("connector_messages_received_total", topic="orders") == 2
            assert sample("connector_messages_received_total", topic="nobody-listens") == 1
            assert sample("connector_unmatched_messages_total", topic="nobody-listens") == 1
            fn = "fn.openfaas-fn"
            assert sample("connector_invocations_total", function=fn, status="200") == 2
            assert sample("connector_invocation_duration_seconds_count", function=fn) == 2
        finally:
            release.set()

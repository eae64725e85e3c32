"""Every header ferry writes carries text as the same UTF-8 bytes: the queue worker's
invocation and its callback (which passes the function's own headers on unchanged)."""

from __future__ import annotations

from aiohttp import web

from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest

CAFE = "café".encode()


def _raw(value: str) -> bytes:
    """The bytes an aiohttp server received for a header value."""
    return value.encode("utf-8", "surrogateescape")


async def test_queued_header_text_reaches_the_function_as_utf8_with_or_without_cjk_beside(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("echo")
    await queue.publish("echo", b"alone", headers=[("X-Word", "café")])
    await queue.publish("echo", b"beside", headers=[("X-Word", "café"), ("X-Lang", "日本")])
    async with queue.worker():
        calls = await gateway_calls(gateway, 2)
    for call in calls:
        assert _raw(call.headers["X-Word"]) == CAFE, call.body
    assert _raw(calls[1].headers["X-Lang"]) == "日本".encode()


async def test_a_callback_passes_the_functions_header_bytes_on_unchanged(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    def answer(call: Call) -> web.Response:
        return web.Response(text="ok", headers={"X-Word": "café", "X-Lang": "日本"})

    gateway.function("echo", answer)
    await queue.publish("echo", b"x", callback_url=receiver.url())
    async with queue.worker(callback_allow_private="true"):
        (received,) = await receiver.wait_for(1)
    assert _raw(received.headers["X-Word"]) == CAFE
    assert _raw(received.headers["X-Lang"]) == "日本".encode()


async def gateway_calls(gateway: FakeGateway, count: int) -> list[Call]:
    await eventually(lambda: len(gateway.calls_to("echo")) >= count, 20, what=f"{count} calls")
    return sorted(gateway.calls_to("echo"), key=lambda c: c.body != b"alone")

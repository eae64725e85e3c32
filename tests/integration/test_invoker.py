"""How the invoker classifies attempts that never reach the function."""

from __future__ import annotations

from connectors.core.config import GatewaySettings, RetrySettings
from connectors.core.gateway import GatewayClient
from connectors.core.invoker import InvocationRequest, Invoker
from connectors.core.retry import RetryPolicy, Verdict
from tests.support.http import FakeGateway
from tests.support.http1 import serve
from tests.support.large import hostile_functions
from tests.support.ports import free_port

POLICY = RetryPolicy.from_settings(RetrySettings(max_retry_attempts=5))


async def test_a_request_that_cannot_be_sent_fails_at_once_without_a_retry(
    gateway: FakeGateway,
) -> None:
    gateway.function("fn")
    client = GatewayClient(GatewaySettings(gateway_url=gateway.url), max_inflight=1)
    try:
        result = await Invoker(client).invoke(
            InvocationRequest("fn", headers=(("X-Bad", "one\r\nX-Injected: two"),))
        )
    finally:
        await client.close()
    outcome = result.outcome(POLICY)
    assert result.status is None
    assert outcome.verdict is Verdict.FAILED
    assert "cannot be sent" in outcome.reason
    assert "not retried" in outcome.reason
    assert gateway.calls_to("fn") == []


async def test_an_unreachable_gateway_is_retried() -> None:
    client = GatewayClient(
        GatewaySettings(gateway_url=f"http://127.0.0.1:{free_port()}"), max_inflight=1
    )
    try:
        result = await Invoker(client).invoke(InvocationRequest("fn"))
    finally:
        await client.close()
    assert result.status is None
    assert result.outcome(POLICY).verdict is Verdict.RETRY


async def test_an_answer_past_max_response_bytes_fails_at_once_in_every_connector() -> None:
    """The invoker is what the Kafka, SQS and cron connectors call, so the bound holds there."""
    runner, base = await serve(hostile_functions)
    settings = GatewaySettings(gateway_url=base, max_response_bytes=1024 * 1024)
    client = GatewayClient(settings, max_inflight=1)
    try:
        invoker = Invoker(client)
        huge = await invoker.invoke(InvocationRequest("huge-chunked", body=b"go"))
        small = await invoker.invoke(InvocationRequest("echo", body=b"fine"))
    finally:
        await client.close()
        await runner.cleanup()
    outcome = huge.outcome(POLICY)
    assert outcome.verdict is Verdict.FAILED
    assert "response larger than max_response_bytes (1048576 bytes)" in outcome.reason
    assert "not retried" in outcome.reason
    assert (small.status, small.body) == (200, b"fine")

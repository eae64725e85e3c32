"""An error nothing foresaw on one message (a bug, or input no check caught: here a function
name with a lone surrogate, which no URL can hold) is a failed attempt like any other: retried
up to the limit, then final with its reason, so every source dead-letters the message and
moves on instead of stalling on it. The same holds for a retry annotation large enough to
overflow the back-off."""

from __future__ import annotations

import logging

from aiohttp import web

from connectors.core.config import RetrySettings
from connectors.core.delivery import Event
from connectors.core.function_entries import FunctionInfo
from connectors.core.logs import ConsoleFormatter
from connectors.core.retry import ANNOTATION_ATTEMPTS, RetryPolicy, Verdict
from tests.support.controller import controller_for
from tests.support.http import FakeGateway

QUICK = RetrySettings(max_retry_attempts=3, initial_retry_wait=0.001, max_retry_wait=0.001)


async def test_a_name_no_url_can_hold_is_retried_then_final_with_its_reason(
    gateway: FakeGateway,
) -> None:
    async with controller_for(gateway, QUICK) as under_test:
        broken = FunctionInfo("a\ud800", "openfaas-fn")
        delivery = await under_test.controller.deliver(Event("orders", b"x"), broken)
    assert delivery.outcome.verdict is Verdict.FAILED
    assert delivery.outcome.exhausted and delivery.result.attempt == 3
    reason = delivery.outcome.reason
    assert "unexpected error: UnicodeEncodeError" in reason and "after 3 attempts" in reason
    assert reason.encode("utf-8") and len(reason) < 400  # a header or a log line can hold it
    assert not gateway.calls


def test_a_huge_attempt_number_waits_at_most_max_wait() -> None:
    policy = RetryPolicy.from_settings(QUICK).for_function({ANNOTATION_ATTEMPTS: "5000"})
    assert 0 <= policy.backoff(1100) <= 0.001
    assert policy.decide(status=503, attempt=4999).verdict is Verdict.RETRY


async def test_a_function_retried_past_1024_attempts_still_gets_a_final_outcome(
    gateway: FakeGateway,
) -> None:
    # 500, a function's own error: an availability failure (503) would open the circuit breaker
    gateway.function("fn", lambda call: web.Response(status=500))
    gateway.subscribe("fn", "orders", **{ANNOTATION_ATTEMPTS: "1030"})
    async with controller_for(gateway, QUICK) as under_test:
        under_test.controller.policy = RetryPolicy.from_settings(QUICK)
        (delivery,) = await under_test.controller.dispatch(Event("orders", b"x"))
    assert delivery.outcome.verdict is Verdict.FAILED
    assert delivery.result.attempt == 1030


def test_a_lone_surrogate_in_a_console_log_line_is_escaped_not_lost() -> None:
    record = logging.makeLogRecord(
        {"msg": "skipped %s", "args": ("a\ud800",), "levelname": "WARNING"}
    )
    line = ConsoleFormatter("%(levelname)s %(message)s").format(record)
    assert line == "WARNING skipped a\\ud800"
    assert line.encode("utf-8")  # stderr can write it

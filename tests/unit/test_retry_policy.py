"""The retry policy: which outcomes retry, how long to wait, and per-function overrides."""

from __future__ import annotations

import dataclasses
import logging
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from connectors.core import retry
from connectors.core.retry import (
    KEPT_ANNOTATION_CHARS,
    POLICIES_KEPT,
    RetryPolicy,
    Verdict,
    parse_retry_after,
)

POLICY = RetryPolicy(max_attempts=4, initial_wait=1.0, max_wait=8.0, codes=frozenset({503, 429}))


@pytest.mark.parametrize(
    ("status", "attempt", "verdict"),
    [
        (200, 1, Verdict.SUCCESS),
        (204, 4, Verdict.SUCCESS),
        (503, 1, Verdict.RETRY),
        (503, 3, Verdict.RETRY),
        (503, 4, Verdict.FAILED),
        (None, 1, Verdict.RETRY),
        (None, 4, Verdict.FAILED),
        (400, 1, Verdict.FAILED),
        (500, 1, Verdict.FAILED),
    ],
)
def test_outcomes(status: int | None, attempt: int, verdict: Verdict) -> None:
    assert POLICY.decide(status=status, attempt=attempt).verdict is verdict


def test_exhausted_failures_say_so() -> None:
    outcome = POLICY.decide(status=503, attempt=4)
    assert outcome.exhausted and "after 4 attempts" in outcome.reason
    assert not POLICY.decide(status=400, attempt=1).exhausted


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    rng = random.Random(7)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        samples = [POLICY.backoff(attempt, rng) for _ in range(300)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.8


def test_retry_after_is_never_undercut() -> None:
    for _ in range(50):
        assert POLICY.decide(status=429, attempt=1, retry_after=30).delay >= 30


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(90)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_annotations_override_the_policy() -> None:
    policy = POLICY.for_function(
        {
            "com.openfaas.retry.attempts": "2",
            "com.openfaas.retry.codes": "500",
            "com.openfaas.retry.min_wait": "100ms",
            "com.openfaas.retry.max_wait": "1s",
        }
    )
    assert (policy.max_attempts, policy.codes) == (2, frozenset({500}))
    assert (policy.initial_wait, policy.max_wait) == (0.1, 1.0)


def test_a_malformed_annotation_is_ignored() -> None:
    assert POLICY.for_function({"com.openfaas.retry.attempts": "many"}) == POLICY


def test_a_malformed_annotation_is_warned_of_once_not_for_every_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    annotations = {"com.openfaas.retry.attempts": "twice", "topic": "orders"}
    with caplog.at_level(logging.WARNING, logger="connectors.core.retry"):
        policies = {POLICY.for_function(annotations) for _ in range(100)}
    assert policies == {POLICY}
    warnings = [r.getMessage() for r in caplog.records if "twice" in r.getMessage()]
    assert len(warnings) == 1, warnings


def test_annotations_are_laid_over_the_policy_they_are_given_to() -> None:
    annotations = {"com.openfaas.retry.min_wait": "2s", "com.openfaas.retry.max_wait": "4s"}
    other = dataclasses.replace(POLICY, max_attempts=9)
    first, second = POLICY.for_function(annotations), other.for_function(annotations)
    assert (first.max_attempts, first.initial_wait, first.max_wait) == (4, 2.0, 4.0)
    assert (second.max_attempts, second.initial_wait, second.max_wait) == (9, 2.0, 4.0)
    assert POLICY.for_function(dict(annotations)) is first  # worked out once


def test_the_policies_kept_for_annotation_values_are_bounded() -> None:
    for attempts in range(1, 3 * POLICIES_KEPT):
        policy = POLICY.for_function({"com.openfaas.retry.attempts": str(attempts)})
        assert policy.max_attempts == attempts
        assert retry._laid_over.cache_info().currsize <= POLICIES_KEPT
    # a value longer than is worth keeping is worked out every time and never kept
    codes = ",".join(["500"] * KEPT_ANNOTATION_CHARS)
    misses = retry._laid_over.cache_info().misses
    assert POLICY.for_function({"com.openfaas.retry.codes": codes}).codes == {500}
    assert retry._laid_over.cache_info().misses == misses


def test_a_timeout_is_final_unless_retry_on_timeout() -> None:
    strict = RetryPolicy(max_attempts=5, initial_wait=1, max_wait=2, codes=frozenset({504}))
    outcome = strict.decide(status=None, attempt=1, error="timed out after 1s", timed_out=True)
    assert outcome.verdict is Verdict.FAILED
    assert "timed out after 1s" in outcome.reason and "retry_on_timeout=false" in outcome.reason
    lenient = dataclasses.replace(strict, retry_on_timeout=True)
    assert lenient.decide(status=None, attempt=1, timed_out=True).verdict is Verdict.RETRY
    assert strict.decide(status=504, attempt=1).verdict is Verdict.RETRY

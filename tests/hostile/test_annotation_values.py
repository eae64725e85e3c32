"""A function's retry and breaker annotations come in every queued call, written by whoever
deployed (or publishes for) it: whatever they hold, the call runs under a sane policy, nothing
raises, and what is kept of them stays bounded."""

from __future__ import annotations

import pytest

from connectors.core import breaker, retry
from connectors.core.breaker import SETTINGS_KEPT, BreakerSettings, annotated_settings
from connectors.core.retry import POLICIES_KEPT, RetryPolicy

POLICY = RetryPolicy(max_attempts=4, initial_wait=1.0, max_wait=8.0, codes=frozenset({503}))
DEFAULTS = BreakerSettings(failures=3, open_for=10.0, max_open_for=40.0)

HOSTILE = [
    "",
    " ",
    "\x00",
    "5\r\nX-Forged: 1",
    "\x1b[2K",
    "+5",
    "0x10",
    "1_0",
    "-1",
    "0",
    "1e400",
    "nan",
    "-1s",
    "9" * 40,
    "1" * 100_000,  # far past what is kept: read, never kept
    "٣",  # a digit, but not an ASCII one
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_retry_annotation_leaves_a_sane_policy(value: str) -> None:
    for name in ("attempts", "codes", "min_wait", "max_wait"):
        policy = POLICY.for_function({f"com.openfaas.retry.{name}": value})
        assert policy.max_attempts >= 1
        assert 0 <= policy.initial_wait <= policy.max_wait
        assert all(isinstance(code, int) for code in policy.codes)


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_breaker_annotation_leaves_sane_settings(value: str) -> None:
    for name in ("failures", "open_for"):
        settings = annotated_settings({f"ferry.breaker.{name}": value}, DEFAULTS)
        assert 1 <= settings.failures <= 1000
        assert 0.01 <= settings.open_for <= DEFAULTS.max_open_for


def test_endless_distinct_values_keep_what_is_kept_bounded() -> None:
    for n in range(4 * max(POLICIES_KEPT, SETTINGS_KEPT)):
        POLICY.for_function({"com.openfaas.retry.min_wait": f"{n}\x00ms"})
        annotated_settings({"ferry.breaker.open_for": f"{n}\r\nms"}, DEFAULTS)
    assert retry._laid_over.cache_info().currsize <= POLICIES_KEPT
    assert breaker._settings_kept.cache_info().currsize <= SETTINGS_KEPT

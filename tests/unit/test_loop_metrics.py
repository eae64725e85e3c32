"""The plain-number metrics expose exactly what prometheus_client's own would (no `_created`)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from connectors.core.connector_metrics import DURATION_BUCKETS
from connectors.core.loop_metrics import LoopCounter, LoopHistogram
from gateway.metrics import PUBLISH_BUCKETS

NAMES = st.sampled_from(["fn", "fn.openfaas-fn", "a-b", 'q"uote', "back\\slash", "new\nline"])
AMOUNTS = st.one_of(
    st.sampled_from([0.0, *DURATION_BUCKETS]),  # exactly on a bound: counts in that bucket
    st.floats(min_value=0, max_value=1_000, allow_nan=False),
)


def _without_created(text: bytes) -> list[str]:
    return [line for line in text.decode().splitlines() if "_created" not in line]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NAMES, st.sampled_from(["200", "500", "503"])), max_size=40))
def test_a_loop_counter_exposes_what_a_client_counter_would(incs: list[tuple[str, str]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = LoopCounter(ours, "calls", "Calls made", ["function", "status"])
    reference = Counter("calls_total", "Calls made", ["function", "status"], registry=theirs)
    for function, status in incs:
        counter.inc(function, status)
        reference.labels(function, status).inc()
    assert _without_created(generate_latest(ours)) == _without_created(generate_latest(theirs))
    for function, status in incs:
        assert counter.value(function, status) == incs.count((function, status))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NAMES, AMOUNTS), max_size=40))
def test_a_loop_histogram_exposes_what_a_client_histogram_would(
    observed: list[tuple[str, float]],
) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    histogram = LoopHistogram(ours, "took_seconds", "Time taken", ["function"], DURATION_BUCKETS)
    reference = Histogram(
        "took_seconds", "Time taken", ["function"], buckets=DURATION_BUCKETS, registry=theirs
    )
    for function, amount in observed:
        histogram.observe(amount, function)
        reference.labels(function).observe(amount)
    assert _without_created(generate_latest(ours)) == _without_created(generate_latest(theirs))
    for function, _ in observed:
        assert histogram.count(function) == sum(1 for f, _ in observed if f == function)


@settings(max_examples=100, deadline=None)
@given(st.lists(AMOUNTS, max_size=40))
def test_an_unlabelled_loop_histogram_exposes_what_a_client_histogram_would(
    observed: list[float],
) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    histogram = LoopHistogram(ours, "took_seconds", "Time taken", [], PUBLISH_BUCKETS)
    reference = Histogram("took_seconds", "Time taken", buckets=PUBLISH_BUCKETS, registry=theirs)
    for amount in observed:
        histogram.observe(amount)
        reference.observe(amount)
    assert _without_created(generate_latest(ours)) == _without_created(generate_latest(theirs))
    assert histogram.count() == len(observed)


@pytest.mark.parametrize("values", [(), ("fn",), ("fn", "200", "x"), ("fn", 200)])
def test_label_values_that_do_not_fit_are_refused_where_they_are_counted(
    values: tuple[object, ...],
) -> None:
    registry = CollectorRegistry()
    counter = LoopCounter(registry, "calls", "Calls made", ["function", "status"])
    histogram = LoopHistogram(registry, "took", "Took", ["function", "status"], [1.0])
    with pytest.raises(ValueError, match="takes 2 text label values"):
        counter.inc(*values)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes 2 text label values"):
        histogram.observe(0.5, *values)  # type: ignore[arg-type]
    assert generate_latest(registry)  # the scrape still works


def test_buckets_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="increasing"):
        LoopHistogram(CollectorRegistry(), "h", "h", [], [1, 0.5])


def test_a_name_taken_in_the_registry_is_refused() -> None:
    registry = CollectorRegistry()
    LoopCounter(registry, "calls", "Calls made", ["function"])
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("calls_total", "Calls made again", registry=registry)


def test_adding_several_at_once_counts_as_that_many_incs_and_checks_the_labels() -> None:
    registry = CollectorRegistry()
    counter = LoopCounter(registry, "calls", "Calls made", ["function", "status"])
    counter.add(3, "fn", "200")
    counter.inc("fn", "200")
    assert counter.value("fn", "200") == 4
    assert registry.get_sample_value("calls_total", {"function": "fn", "status": "200"}) == 4
    with pytest.raises(ValueError, match="takes 2 text label values"):
        counter.add(2, "fn")

"""The call ledger records the trace a call belongs to: the trace id of the `traceparent` the
queued call carries (set by the front door's send span, or by the caller)."""

from __future__ import annotations

import pytest

from asyncq.publisher import build_request
from connectors.core.tracing import trace_id
from ledger.entries import CallEntry, CallState
from ledger.queued import base_entry, queued_value

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_every_entry_of_a_traced_call_carries_its_trace_id() -> None:
    request = build_request("echo", headers=[("traceparent", f"00-{TRACE}-00f067aa0ba902b7-01")])
    assert CallEntry.decode(queued_value(request)).trace_id == TRACE
    entry = base_entry(request, CallState.RUNNING, 1, 1.7e9)
    assert entry.trace_id == TRACE
    assert CallEntry.decode(entry.encode()).public()["trace_id"] == TRACE


def test_a_call_without_a_trace_has_none() -> None:
    assert CallEntry.decode(queued_value(build_request("echo"))).trace_id is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
    ],
)
def test_a_malformed_traceparent_is_no_trace_id(value: str) -> None:
    assert trace_id([value]) is None

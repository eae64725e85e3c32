"""The queue worker's quick final entry is the entry: the same JSON as `CallEntry` writes."""

from __future__ import annotations

import json
import time

from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from asyncq.codec import QueueRequest
from connectors.core.invoker import InvocationResult
from ledger.entries import CallEntry, CallState
from queue_worker.finished_entry import _PAIRS_KEPT, Finished, _headers_json, _pair_texts

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_header_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=30)


@st.composite
def calls(draw: st.DrawFn) -> tuple[QueueRequest, InvocationResult]:
    header: dict[str, list[str]] = {}
    call_id = draw(st.text(max_size=80))
    if call_id:
        header["X-Call-Id"] = [call_id]
    header["X-Start-Time"] = [draw(st.sampled_from(["", "abc", str(time.time_ns()), "0"]))]
    traceparent = draw(st.sampled_from(["", TRACEPARENT, "00-not-a-trace"]))
    if traceparent:
        header["Traceparent"] = [traceparent]
    request = QueueRequest(
        function=draw(st.sampled_from(["echo", "fn.openfaas-fn", "café", 'q"uote\\'])),
        header=header,
        queue_name=draw(st.sampled_from(["", "slow-queue"])),
        callback_url=draw(st.sampled_from(["", "http://u:p@hooks.example/x?y=1", "http://[::1"])),
    )
    headers = CIMultiDict(
        draw(
            st.lists(
                st.tuples(st.sampled_from(["X-A", "Content-Type", "Content-Length"]), _header_text),
                max_size=4,
            )
        )
    )
    result = InvocationResult(
        function=request.function,
        status=draw(st.none() | st.integers(100, 599)),
        attempt=draw(st.integers(1, 20)),
        duration=draw(st.floats(0, 1e5)),
        body=draw(st.binary(max_size=200)),
        headers=CIMultiDictProxy(headers),
        error=draw(st.sampled_from(["", "timed out", "bad \u2028 line"])),
    )
    return request, result


@given(
    call=calls(),
    state=st.sampled_from([CallState.SUCCEEDED, CallState.FAILED]),
    outcome=st.sampled_from([None, "pending", "delivered", "refused"]),
    limit=st.sampled_from([0, 100, 64 * 1024]),
    now=st.floats(1e9, 4e9),
)
def test_the_quick_final_entry_reads_back_as_the_full_one(
    call: tuple[QueueRequest, InvocationResult],
    state: CallState,
    outcome: str | None,
    limit: int,
    now: float,
) -> None:
    request, result = call
    finished = Finished(request, state, result, now, outcome, limit)
    quick = CallEntry.decode(finished.encode())
    full = finished.entry()
    assert quick.public() == full.public()
    assert quick.result == full.result
    # every field, in the order the slow encoding writes them, and nothing else
    assert list(json.loads(finished.encode())) == list(json.loads(full.encode()))


@given(call=calls(), now=st.floats(1e9, 4e9))
def test_the_quick_final_entry_is_byte_for_byte_the_slow_one(
    call: tuple[QueueRequest, InvocationResult], now: float
) -> None:
    """Not only the same entry read back: the same bytes, so no reader can tell them apart."""
    request, result = call
    finished = Finished(request, CallState.SUCCEEDED, result, now, "delivered", 64 * 1024)
    assert finished.encode() == finished.entry().encode()


def test_header_pairs_kept_as_text_stay_bounded() -> None:
    for n in range(3 * _PAIRS_KEPT):
        _headers_json(CIMultiDictProxy(CIMultiDict([("X-N", str(n)), ("Content-Length", "1")])))
    assert len(_pair_texts) <= _PAIRS_KEPT

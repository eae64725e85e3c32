"""A call's final ledger entry, with the function's answer, encoded straight from the call:
the worker writes one for nearly every call, so this is on its hot path."""

from __future__ import annotations

from binascii import b2a_base64

from multidict import CIMultiDictProxy

from asyncq.codec import QueueRequest
from connectors.core.invoker import InvocationResult
from ledger.entries import (
    CACHED_TEXT_CHARS,
    CallEntry,
    CallState,
    StoredResult,
    float_text,
    function_texts,
    json_text,
    public_url,
    quote,
    rfc3339,
    start_time_text,
)
from ledger.queued import base_entry, trace_id_of

_NOT_KEPT = {"content-length", "transfer-encoding", "connection", "keep-alive"}


class Finished:
    """A call's final entry with the function's answer, encoded straight from the call and
    its result: the worker writes one for nearly every call, and skipping the `CallEntry` and
    `StoredResult` objects halves the cost. `entry()` builds the same entry the long way; a
    test holds the two equal."""

    __slots__ = ("limit", "now", "outcome", "request", "result", "state")

    def __init__(
        self,
        request: QueueRequest,
        state: CallState,
        result: InvocationResult,
        now: float,
        outcome: str | None,
        limit: int,
    ) -> None:
        self.request = request
        self.state = state
        self.result = result
        self.now = now
        self.outcome = outcome
        self.limit = limit

    def entry(self) -> CallEntry:
        """The entry `encode` writes, built field by field (the reference for tests)."""
        result = self.result
        entry = base_entry(self.request, self.state, result.attempt, self.now)
        entry.status = result.reported_status
        entry.error = result.error or None
        entry.started_at = rfc3339(self.now - result.duration)
        entry.finished_at = entry.updated_at
        entry.callback_outcome = self.outcome
        entry.result_bytes = len(result.body)
        entry.result = stored_result(result, self.limit)
        entry.result_stored = entry.result is not None
        return entry

    def encode(self) -> bytes:
        """The entry as `entry().encode()` writes it, in `CallEntry.encode`'s field order (a
        test holds both), from one f-string (no template parsed per call); the stored answer's
        base64 goes in as `binascii` makes it, never through a str, and the answer's header
        pairs as JSON text kept from earlier calls."""
        request, result, now = self.request, self.result, self.now
        body = result.body
        status = kept_status(result, self.limit)
        function, namespace, queue = function_texts(request.function, request.queue_name)
        updated = rfc3339(now)
        callback = request.callback
        head = (
            f'{{"call_id":{json_text(request.call_id)},"function":{function},'
            f'"state":"{self.state.value}","namespace":{namespace},"queue":{queue},'
            f'"attempts":{result.attempt:d},"status":{result.reported_status:d},'
            f'"queued_at":{json_text(start_time_text(request.start_time))},'
            f'"started_at":"{rfc3339(now - result.duration)}","finished_at":"{updated}",'
            f'"next_attempt_at":null,"updated_at":"{updated}",'
            f'"callback_url":{json_text(public_url(callback)) if callback else "null"},'
            f'"callback_outcome":{json_text(self.outcome)},'
            f'"error":{json_text(result.error or None)},'
            f'"result_stored":{"false" if status is None else "true"},'
            f'"result_bytes":{len(body):d},"trace_id":{json_text(trace_id_of(request))}'
        )
        if status is None:
            return (head + "}").encode()
        headers = result.headers
        stored = (
            f',"result":{{"status":{status:d},'
            f'"content_type":{quote(headers.get("Content-Type", ""))},'
            f'"duration_seconds":{float_text(round(result.duration, 6))},'
            f'"headers":[{_headers_json(headers)}],"body":"'
        )
        return b"".join(((head + stored).encode(), b2a_base64(body, newline=False), b'"}}'))


def _headers_json(headers: CIMultiDictProxy[str]) -> str:
    """The header pairs a stored answer keeps, as JSON text (`[["k","v"],...]` inside): each
    pair's text is kept a while, since a function answers with much the same headers."""
    texts = []
    kept = _pair_texts
    for item in headers.items():
        text = kept.get(item)
        if text is None:
            name, value = item
            text = "" if name.lower() in _NOT_KEPT else f"[{quote(name)},{quote(value)}]"
            if len(name) + len(value) <= CACHED_TEXT_CHARS:
                if len(kept) >= _PAIRS_KEPT:
                    kept.clear()
                kept[item] = text
        if text:
            texts.append(text)
    return ",".join(texts)


_PAIRS_KEPT = 256
_pair_texts: dict[tuple[str, str], str] = {}  # a header pair -> its JSON text ("" if dropped)


def _kept_headers(result: InvocationResult) -> list[tuple[str, str]]:
    """The answer's headers a stored result keeps (a callback would carry them)."""
    return [(k, v) for k, v in result.headers.items() if k.lower() not in _NOT_KEPT]


def kept_status(result: InvocationResult, limit: int) -> int | None:
    """The status of an answer the ledger keeps (a function answered, within
    `result_max_bytes`), or None when it keeps none."""
    if not limit or len(result.body) > limit:
        return None
    return result.status


def stored_result(result: InvocationResult, limit: int) -> StoredResult | None:
    """The answer as the ledger keeps it, or None when it is not kept."""
    status = kept_status(result, limit)
    if status is None:
        return None
    return StoredResult(
        status=status,
        content_type=result.headers.get("Content-Type", ""),
        duration_seconds=round(result.duration, 6),
        headers=_kept_headers(result),
        body=result.body,
    )

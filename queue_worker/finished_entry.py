"""A call's final ledger entry, with the function's answer, encoded straight from the call:
the worker writes one for nearly every call, so this is on its hot path."""

from __future__ import annotations

from asyncq.codec import QueueRequest
from connectors.core.invoker import InvocationResult
from ledger.entries import (
    CallEntry,
    CallState,
    StoredResult,
    entry_template,
    function_texts,
    json_text,
    public_url,
    result_json,
    rfc3339,
    start_time_text,
)
from ledger.store import base_entry

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
        request, result, now = self.request, self.result, self.now
        body = result.body
        stored = ""
        status = kept_status(result, self.limit)
        if status is not None:
            stored = ',"result":' + result_json(
                status,
                result.headers.get("Content-Type", ""),
                round(result.duration, 6),
                _kept_headers(result),
                body,
            )
        function, namespace, queue = function_texts(request.function, request.queue_name)
        updated = rfc3339(now)
        callback = request.callback
        return _FINISHED.format(
            json_text(request.call_id),
            function,
            self.state.value,
            namespace,
            queue,
            result.attempt,
            result.reported_status,
            json_text(start_time_text(request.start_time)),
            rfc3339(now - result.duration),
            updated,
            updated,
            json_text(public_url(callback)) if callback else "null",
            json_text(self.outcome),
            json_text(result.error or None),
            "true" if stored else "false",
            len(body),
            stored,
        ).encode()


_FINISHED = entry_template(
    {
        "state": '"{}"',
        "attempts": "{:d}",
        "status": "{:d}",
        "started_at": '"{}"',
        "finished_at": '"{}"',
        "next_attempt_at": "null",
        "updated_at": '"{}"',
        "result_bytes": "{:d}",
    }
)


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

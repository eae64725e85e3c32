"""Entries made from a queued call's message: the base every worker entry starts from, and
the `queued` entry the front door and one-shot commands write beside the publish."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from nats.errors import Error as NatsError
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from asyncq.codec import QueueRequest
from connectors.core import tracing
from connectors.jetstream.connect import describe
from ledger.entries import (
    CallEntry,
    CallState,
    entry_key,
    entry_template,
    function_texts,
    json_text,
    public_url,
    rfc3339,
    split_function,
    start_time_text,
)

log = logging.getLogger("ferry.ledger")
T = TypeVar("T")


def base_entry(request: QueueRequest, state: CallState, attempt: int, now: float) -> CallEntry:
    """An entry with what the message itself says, in `state` as of `now`."""
    _, namespace = split_function(request.function)
    return CallEntry(
        call_id=request.call_id,
        function=request.function,
        namespace=namespace,
        queue=request.queue_name,
        state=state,
        attempts=attempt,
        queued_at=start_time_text(request.start_time),
        updated_at=rfc3339(now),
        callback_url=public_url(request.callback) if request.callback else None,
        trace_id=trace_id_of(request),
    )


def trace_id_of(request: QueueRequest) -> str | None:
    """The trace a queued call belongs to: its `Traceparent` header, as the front door (with
    tracing on) or the caller set it; one dict lookup, as Go and ferry spell the key."""
    return tracing.trace_id(request.header.get("Traceparent"))


def queued_entry(request: QueueRequest) -> CallEntry:
    """The entry of a call just handed to JetStream, before any worker saw it."""
    return base_entry(request, CallState.QUEUED, 0, time.time())


def queued_value(request: QueueRequest) -> bytes:
    """`queued_entry(request).encode()` in a fraction of the time: the front door writes one
    for every call it accepts, and only four of the fields vary from call to call."""
    callback = request.callback
    function, namespace, queue = function_texts(request.function, request.queue_name)
    return _QUEUED.format(
        json_text(request.call_id),
        function,
        namespace,
        queue,
        json_text(start_time_text(request.start_time)),
        rfc3339(time.time()),
        json_text(public_url(callback)) if callback else "null",
        json_text(trace_id_of(request)),
    ).encode()


_QUEUED = entry_template(
    {
        "state": '"queued"',
        "attempts": "0",
        "status": "null",
        "started_at": "null",
        "finished_at": "null",
        "next_attempt_at": "null",
        "updated_at": '"{}"',
        "callback_outcome": "null",
        "error": "null",
        "result_stored": "false",
        "result_bytes": "null",
    },
    result=False,
)


async def record_queued(
    kv: KeyValue,
    request: QueueRequest,
    publish: Coroutine[Any, Any, T],
    value: bytes | None = None,
) -> T:
    """Run `publish` with the `queued` entry (or `value`) created beside it (for one-shot
    commands, which have no background writer). A ledger that cannot be written is logged,
    never raised."""
    entry = queued_value(request) if value is None else value
    create = asyncio.ensure_future(
        kv.create(entry_key(request.call_id), entry, validate_keys=False)
    )
    try:
        return await publish
    finally:
        try:
            await create
        except KeyWrongLastSequenceError:
            pass  # a worker wrote first
        except (NatsError, TimeoutError) as exc:
            log.warning("call ledger: could not record the call as queued: %s", describe(exc))

"""Sends a message that failed for good to an explicit dead-letter queue, saying why.

Used only for queues without a redrive policy. The copy keeps the body and as many of the
original attributes as SQS allows beside the five that explain the failure (ten in all).

The copy must fit the dead-letter queue's `MaximumMessageSize` (body and attributes count):
the original attributes go first; a body that cannot fit even alone is replaced by a short
note, with `Ferry-Body-Omitted` saying how large it was, so the failure is still recorded
(with the source queue and message id) and the message leaves its queue instead of failing
to be dead-lettered on every receive.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.sqs.client import SqsClient, SqsError
from connectors.sqs.message import SqsMessage

MAX_ATTRIBUTES = 10
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024  # SQS's long-time default, when the queue does not say
REASON = "Ferry-Dead-Reason"
FUNCTION = "Ferry-Function"
ATTEMPTS = "Ferry-Attempts"
LAST_STATUS = "Ferry-Last-Status"
SOURCE_QUEUE = "Ferry-Source-Queue"
SOURCE_MESSAGE = "Ferry-Source-Message-Id"
BODY_OMITTED = "Ferry-Body-Omitted"

Attributes = dict[str, Mapping[str, Any]]


# the attributes ferry adds to a dead letter
OWN = frozenset({REASON, FUNCTION, ATTEMPTS, LAST_STATUS, SOURCE_QUEUE})


def max_message_size(queue_attributes: Mapping[str, str]) -> int:
    """A queue's `MaximumMessageSize`, or SQS's default when it does not say."""
    try:
        return int(queue_attributes.get("MaximumMessageSize", DEFAULT_MAX_MESSAGE_BYTES))
    except ValueError:
        return DEFAULT_MAX_MESSAGE_BYTES


def _text(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value or "-"}


def dead_letter_attributes(
    message: SqsMessage, *, function: str, reason: str, attempts: int, last_status: str
) -> Attributes:
    ours: Attributes = {
        REASON: _text(reason[:1024]),
        FUNCTION: _text(function[:1024]),
        ATTEMPTS: {"DataType": "Number", "StringValue": str(attempts)},
        LAST_STATUS: _text(last_status),
        SOURCE_QUEUE: _text(message.queue_url),
    }
    kept = {
        name: value
        for name, value in sorted(message.attributes.items())
        if name not in ours and ("StringValue" in value or "BinaryValue" in value)
    }
    room = MAX_ATTRIBUTES - len(ours)
    return {**dict(list(kept.items())[:room]), **ours}


def message_size(body: str, attributes: Attributes) -> int:
    """What SQS counts against `MaximumMessageSize`: the body and every attribute's name,
    type and value, in bytes."""
    size = len(body.encode("utf-8", "surrogatepass"))
    for name, value in attributes.items():
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        if "StringValue" in value:
            size += len(str(value["StringValue"]).encode("utf-8", "surrogatepass"))
        else:
            size += len(bytes(value.get("BinaryValue", b"")))
    return size


def _ours(attributes: Attributes) -> Attributes:
    """Only the attributes ferry adds (the message's own are dropped to make room)."""
    return {name: value for name, value in attributes.items() if name in OWN}


def fitted_copy(message: SqsMessage, attributes: Attributes, limit: int) -> tuple[str, Attributes]:
    """The body and attributes to send so that the copy fits `limit` bytes."""
    if message_size(message.body, attributes) <= limit:
        return message.body, attributes
    ours = _ours(attributes)
    if message_size(message.body, ours) <= limit:
        return message.body, ours
    return omitted_copy(message, ours, f"over the dead-letter queue's {limit}-byte limit")


def omitted_copy(message: SqsMessage, ours: Attributes, why: str) -> tuple[str, Attributes]:
    size = len(message.body.encode("utf-8", "surrogatepass"))
    note = f"the body ({size} bytes) was not copied: {why}"
    return f"[{note}]", {
        **ours,
        SOURCE_MESSAGE: _text(message.message_id),
        BODY_OMITTED: _text(note),
    }


def _too_long(exc: SqsError) -> bool:
    return exc.code == "InvalidParameterValue" and "shorter than" in str(exc)


async def send_dead_letter(
    client: SqsClient,
    url: str,
    message: SqsMessage,
    *,
    function: str,
    reason: str,
    attempts: int,
    last_status: str,
    limit: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> None:
    attributes = dead_letter_attributes(
        message, function=function, reason=reason, attempts=attempts, last_status=last_status
    )
    body, fitted = fitted_copy(message, attributes, limit)
    fifo = url.endswith(".fifo")
    options = {
        "group_id": (message.group_id or "ferry-dead-letters") if fifo else "",
        "deduplication_id": message.message_id if fifo else "",
    }
    try:
        await client.send(url, body, fitted, **options)
    except SqsError as exc:
        if not _too_long(exc) or BODY_OMITTED in fitted:
            raise
        # The queue's limit is lower than it said (or changed): record the failure anyway.
        body, fitted = omitted_copy(message, _ours(fitted), str(exc)[:300])
        await client.send(url, body, fitted, **options)

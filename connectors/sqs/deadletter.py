"""Sends a message that failed for good to an explicit dead-letter queue, saying why.

Used only for queues without a redrive policy. The copy keeps the body and as many of the
original attributes as SQS allows beside the four that explain the failure (ten in all).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.sqs.client import SqsClient
from connectors.sqs.message import SqsMessage

MAX_ATTRIBUTES = 10
REASON = "Ferry-Dead-Reason"
FUNCTION = "Ferry-Function"
ATTEMPTS = "Ferry-Attempts"
LAST_STATUS = "Ferry-Last-Status"
SOURCE_QUEUE = "Ferry-Source-Queue"


def _text(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value or "-"}


def dead_letter_attributes(
    message: SqsMessage, *, function: str, reason: str, attempts: int, last_status: str
) -> dict[str, Mapping[str, Any]]:
    ours: dict[str, Mapping[str, Any]] = {
        REASON: _text(reason[:1024]),
        FUNCTION: _text(function),
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


async def send_dead_letter(
    client: SqsClient,
    url: str,
    message: SqsMessage,
    *,
    function: str,
    reason: str,
    attempts: int,
    last_status: str,
) -> None:
    attributes = dead_letter_attributes(
        message, function=function, reason=reason, attempts=attempts, last_status=last_status
    )
    fifo = url.endswith(".fifo")
    await client.send(
        url,
        message.body,
        attributes,
        group_id=(message.group_id or "ferry-dead-letters") if fifo else "",
        deduplication_id=message.message_id if fifo else "",
    )

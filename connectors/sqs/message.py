"""One received SQS message, and the headers a function sees for it.

String attributes follow `header_values`: printable text as it is (the function reads the
same UTF-8 bytes), anything else base64 with `-Enc: b64`; binary attributes are always sent
base64 with `-Enc: b64`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connectors.core.header_values import base64_header, text_header
from connectors.core.numbers import ascii_int

if TYPE_CHECKING:
    from connectors.core.spans import Scope

ATTRIBUTE_HEADER_PREFIX = "X-SQS-Attr-"


def queue_name(url: str) -> str:
    """The topic of a queue's messages: the last segment of its URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class SqsMessage:
    queue_url: str
    message_id: str
    receipt: str
    body: str
    receive_count: int = 1
    group_id: str = ""
    attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sent_at: float | None = None  # SentTimestamp, Unix seconds

    @classmethod
    def from_response(cls, queue_url: str, raw: Mapping[str, Any]) -> SqsMessage:
        system = raw.get("Attributes") or {}
        try:
            count = max(int(system.get("ApproximateReceiveCount", "1")), 1)
        except ValueError:
            count = 1
        sent = str(system.get("SentTimestamp", ""))
        return cls(
            queue_url=queue_url,
            message_id=str(raw.get("MessageId", "")),
            receipt=str(raw.get("ReceiptHandle", "")),
            body=str(raw.get("Body", "")),
            receive_count=count,
            group_id=str(system.get("MessageGroupId", "")),
            attributes=dict(raw.get("MessageAttributes") or {}),
            sent_at=None if (sent_ms := ascii_int(sent, 16)) is None else sent_ms / 1000,
        )

    @property
    def topic(self) -> str:
        return queue_name(self.queue_url)

    def headers(self) -> tuple[tuple[str, str], ...]:
        headers = [
            ("X-SQS-Message-ID", self.message_id),
            ("X-SQS-Queue-URL", self.queue_url),
            ("X-SQS-Receive-Count", str(self.receive_count)),
        ]
        if self.group_id:
            headers.append(("X-SQS-Group-ID", self.group_id))
        for name, value in sorted(self.attributes.items()):
            header = f"{ATTRIBUTE_HEADER_PREFIX}{name}"
            if "StringValue" in value:
                headers.extend(text_header(header, str(value["StringValue"])))
            elif "BinaryValue" in value:
                headers.extend(base64_header(header, bytes(value["BinaryValue"])))
        return tuple(headers)


def message_span(queue: str, message: SqsMessage) -> Scope:
    """The `process` span of one received message (tracing on), made current while it is
    handled: a `traceparent` message attribute is continued, else the message starts a trace.
    A message received again (a retry) is a new span of the same trace when it carries one."""
    from connectors.core import spans

    carrier = [
        (name, str(value["StringValue"]))
        for name, value in message.attributes.items()
        if "StringValue" in value
    ]
    return spans.start_process(
        queue,
        spans.carried(carrier),
        {
            "messaging.system": "aws_sqs",
            "messaging.destination.name": queue,
            "messaging.message.id": message.message_id,
            "ferry.attempt": message.receive_count,
        },
    )

"""A Kafka record as a connector `Event`: body, topic and the `X-Kafka-*` headers.

HTTP header values must be printable text, while Kafka keys and header values are bytes (or
null): `header_values` says how each is sent (as it is, base64 with `-Enc: b64`, or empty with
`-Enc: null`). A tombstone (a null value) arrives as an empty body with `X-Kafka-Tombstone:
true`, so a function can tell it from an empty value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from connectors.core.delivery import Event
from connectors.core.header_values import bytes_header
from connectors.core.http1 import is_token

if TYPE_CHECKING:
    from aiokafka import TopicPartition
    from aiokafka.structs import ConsumerRecord

    from connectors.core.spans import Scope

TOMBSTONE_HEADER = "X-Kafka-Tombstone"


def kafka_headers(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = [
        ("X-Kafka-Topic", topic),
        ("X-Kafka-Partition", str(partition)),
        ("X-Kafka-Offset", str(offset)),
    ]
    if key is not None:
        out.extend(bytes_header("X-Kafka-Key", key))
    for name, value in headers:
        if not is_token(name):
            continue  # not expressible as an HTTP header name
        out.extend(bytes_header(f"X-Kafka-{name}", value))
    return tuple(out)


def record_event(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> Event:
    found = kafka_headers(topic, partition, offset, key, headers)
    return Event(  # by position: made for every record
        topic,
        value or b"",
        found if value is not None else (*found, (TOMBSTONE_HEADER, "true")),
        f"{topic}-{found[1][1]}-{found[2][1]}",  # partition and offset, as text already
    )


def source_of(event: Event) -> tuple[str, str, str]:
    """The (topic, partition, offset) an event came from, read back from its headers."""
    found = dict(event.headers)
    return (
        found.get("X-Kafka-Topic", event.topic),
        found.get("X-Kafka-Partition", ""),
        found.get("X-Kafka-Offset", ""),
    )


def partition_source(partition: TopicPartition) -> str:
    """A partition as logs and the `source` label name it: `topic/partition`."""
    return f"{partition.topic}/{partition.partition}"


def record_span(record: ConsumerRecord[bytes, bytes], group: str) -> Scope:
    """The `process` span of one record (tracing on), made current while it is dispatched:
    a `traceparent` record header is continued, else the record starts a trace."""
    from connectors.core import spans

    return spans.start_process(
        record.topic,
        spans.carried(record.headers or ()),
        {
            "messaging.system": "kafka",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.consumer.group.name": group,
        },
    )

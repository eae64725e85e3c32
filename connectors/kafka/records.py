"""A Kafka record as a connector `Event`: body, topic and the `X-Kafka-*` headers.

HTTP header values must be printable text, while Kafka keys and header values are bytes. Text
that is valid UTF-8 and printable is passed as is; anything else is sent base64-encoded with a
companion `...-Enc: b64` header, so a function can always recover the exact bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from connectors.core.controller import Event
from connectors.core.http1 import is_token


def header_text(value: bytes) -> str | None:
    """`value` as header text, or None when it must be base64-encoded."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        return None
    return text


def _encoded(name: str, value: bytes) -> list[tuple[str, str]]:
    text = header_text(value)
    if text is not None:
        return [(name, text)]
    return [(name, base64.b64encode(value).decode("ascii")), (f"{name}-Enc", "b64")]


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
        out.extend(_encoded("X-Kafka-Key", key))
    for name, value in headers:
        if not is_token(name):
            continue  # not expressible as an HTTP header name
        out.extend(_encoded(f"X-Kafka-{name}", value or b""))
    return tuple(out)


def record_event(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> Event:
    return Event(
        topic=topic,
        body=value or b"",
        headers=kafka_headers(topic, partition, offset, key, headers),
        call_id=f"{topic}-{partition}-{offset}",
    )


def source_of(event: Event) -> tuple[str, str, str]:
    """The (topic, partition, offset) an event came from, read back from its headers."""
    found = dict(event.headers)
    return (
        found.get("X-Kafka-Topic", event.topic),
        found.get("X-Kafka-Partition", ""),
        found.get("X-Kafka-Offset", ""),
    )

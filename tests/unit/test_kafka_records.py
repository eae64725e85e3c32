"""Kafka records become events whose headers carry their exact bytes."""

from __future__ import annotations

import base64

from connectors.kafka.records import record_event, source_of


def test_position_and_text_key_become_headers() -> None:
    event = record_event("orders", 2, 41, b"customer-7", b"{}", [("trace", b"abc")])
    headers = dict(event.headers)
    assert headers["X-Kafka-Topic"] == "orders"
    assert headers["X-Kafka-Partition"] == "2"
    assert headers["X-Kafka-Offset"] == "41"
    assert headers["X-Kafka-Key"] == "customer-7"
    assert "X-Kafka-Key-Enc" not in headers
    assert headers["X-Kafka-trace"] == "abc"
    assert source_of(event) == ("orders", "2", "41")


def test_binary_key_and_header_are_base64_with_a_marker() -> None:
    event = record_event("t", 0, 0, b"\xff\x00", b"", [("bin", b"a\r\nb")])
    headers = dict(event.headers)
    assert base64.b64decode(headers["X-Kafka-Key"]) == b"\xff\x00"
    assert headers["X-Kafka-Key-Enc"] == "b64"
    assert base64.b64decode(headers["X-Kafka-bin"]) == b"a\r\nb"
    assert headers["X-Kafka-bin-Enc"] == "b64"


def test_no_key_means_no_key_header_and_unsendable_names_are_skipped() -> None:
    event = record_event("t", 0, 0, None, None, [("bad name", b"x")])
    names = [name for name, _ in event.headers]
    assert "X-Kafka-Key" not in names
    assert not any("bad" in name for name in names)
    assert event.body == b""

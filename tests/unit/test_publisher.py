"""What the front door, `ferry publish` and replay put in every QueueRequest they build."""

from __future__ import annotations

import uuid

from asyncq.publisher import build_request, new_call_id


def test_call_ids_are_distinct_version_4_uuids_in_their_usual_text_form() -> None:
    ids = [new_call_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_header_names_are_stored_in_gos_canonical_form_and_values_kept_in_order() -> None:
    request = build_request(
        "fn",
        headers=[("x-trace-id", "a"), ("X-TRACE-ID", "b"), ("content-type", "text/plain")],
    )
    assert request.header["X-Trace-Id"] == ["a", "b"]
    assert request.header["Content-Type"] == ["text/plain"]
    assert uuid.UUID(request.call_id).version == 4
    assert request.start_time.isdigit()


def test_a_call_id_the_caller_sent_is_kept() -> None:
    request = build_request("fn", headers=[("x-call-id", "mine")])
    assert request.call_id == "mine"
    assert request.header["X-Call-Id"] == ["mine"]

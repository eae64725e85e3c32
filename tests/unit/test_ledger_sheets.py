"""Sheets: the front door's `queued` records of many calls in one ledger value, and how a
reader finds a call on one."""

from __future__ import annotations

import json
import uuid

from ledger.entries import CallEntry, CallState, start_time_text
from ledger.sheets import (
    PREFIX_CHARS,
    QueuedOnSheets,
    Sheet,
    call_id_on,
    new_sheet,
    sheet_entries,
    sheet_entry,
    sheet_key,
)


def test_ids_made_on_a_sheet_are_distinct_version_4_uuids_that_name_their_sheet() -> None:
    sheets = [new_sheet() for _ in range(50)]
    assert len(set(sheets)) == 50
    for sheet in sheets:
        ids = [call_id_on(sheet) for _ in range(64)]
        assert len(set(ids)) == 64
        for text in ids:
            parsed = uuid.UUID(text)
            assert str(parsed) == text
            assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
            assert sheet_key(text) == "sheet." + sheet == "sheet." + text[:PREFIX_CHARS]


def test_ids_no_sheet_can_hold_have_no_sheet_key() -> None:
    for call_id in ("mine", "A" * 36, str(uuid.uuid1()), str(uuid.uuid4()).upper(), ""):
        assert sheet_key(call_id) is None
    assert sheet_key(str(uuid.uuid4())) is not None  # any v4 id may be on one; a read looks


START = "1796619600123000000"  # X-Start-Time, Unix nanoseconds


def record(call_id: str, function: str = "fn.team") -> tuple[str, str, str, str, None, None]:
    return (call_id, function, "q", START, None, None)


def test_a_sheet_reads_back_as_the_queued_entries_of_its_calls() -> None:
    sheet = new_sheet()
    ids = [call_id_on(sheet) for _ in range(3)]
    raw = Sheet([record(i) for i in ids], "2026-12-07T05:00:01.000+00:00").encode()
    entries = list(sheet_entries(raw))
    assert [e.call_id for e in entries] == ids
    first = entries[0]
    assert (first.state, first.function, first.namespace, first.queue) == (
        CallState.QUEUED,
        "fn.team",
        "team",
        "q",
    )
    assert (first.attempts, first.status, first.finished_at) == (0, None, None)
    assert first.updated_at == "2026-12-07T05:00:01.000+00:00"
    assert first.queued_at == start_time_text(START)
    assert sheet_entry(raw, ids[1]) is not None
    assert sheet_entry(raw, call_id_on(sheet)) is None  # on the sheet's prefix, not on it


def test_what_is_not_a_sheet_or_not_a_record_is_passed_over() -> None:
    for raw in (b"", b"[]", b'{"calls":[]}', b'{"updated_at":1,"calls":[]}', b"\xff"):
        assert sheet_entry(raw, "x") is None
    rows = [["a", "fn", "", None, None, None], ["b", 1, "", None, None, None], "c", ["d"]]
    raw = json.dumps({"updated_at": "t", "calls": rows}).encode()
    assert [e.call_id for e in sheet_entries(raw)] == ["a"]


def sheet_of(*ids: str) -> bytes:
    return Sheet([record(i) for i in ids], "t").encode()


def test_an_entry_of_the_calls_own_replaces_its_record_whether_it_came_first_or_last() -> None:
    reading = QueuedOnSheets(cap=100)
    reading.entry_seen("early")  # a fast worker wrote before the sheet landed
    reading.sheet_seen(5, sheet_of("early", "late", "still"))
    reading.entry_seen("late")
    assert [(n, e.call_id) for n, e in reading.standing()] == [(5, "still")]


def test_reading_sheets_holds_at_most_cap_records_the_newest() -> None:
    reading = QueuedOnSheets(cap=3)
    reading.sheet_seen(1, sheet_of("a", "b"))
    reading.sheet_seen(2, sheet_of("c", "d"))
    assert [e.call_id for _, e in reading.standing()] == ["b", "c", "d"]


def test_an_entry_and_a_sheet_record_decode_to_the_same_shape() -> None:
    (from_sheet,) = sheet_entries(sheet_of("x"))
    again = CallEntry.decode(from_sheet.encode())
    assert again.public() == from_sheet.public()

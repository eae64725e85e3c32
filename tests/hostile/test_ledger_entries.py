"""Call ledger entries read back from the bucket are input: anyone with access to the bucket
can write one. Whatever is there, reading it gives an entry of the right shape or a refusal."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ledger.entries import (
    MAX_ENTRY_BYTES,
    CallEntry,
    _function_texts_kept,
    _public_url_kept,
    function_texts,
    public_url,
)

_FIELDS = [name for name in CallEntry.__dataclass_fields__ if name != "result"]
_REQUIRED = ("call_id", "function", "state")
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_KIND: dict[str, type | tuple[type, ...]] = {
    "attempts": int,
    "status": (int, type(None)),
    "result_bytes": (int, type(None)),
    "result_stored": bool,
}


def _read(raw: bytes) -> CallEntry | None:
    try:
        return CallEntry.decode(raw)
    except ValueError:
        return None


@given(
    st.fixed_dictionaries(
        {"call_id": st.text() | _json, "function": st.text(), "state": st.just("queued")},
        optional={name: _json for name in _FIELDS if name not in _REQUIRED} | {"result": _json},
    )
)
def test_an_entry_of_any_json_reads_as_a_well_typed_entry_or_not_at_all(
    data: dict[str, Any],
) -> None:
    entry = _read(json.dumps(data).encode())
    if entry is None:
        return
    for name in _FIELDS:
        value = getattr(entry, name)
        kind = _KIND.get(name, (str, type(None)))
        assert isinstance(value, kind), (name, value)
        assert not isinstance(value, bool) or name == "result_stored"
    json.dumps(entry.public())  # the API can answer it
    if entry.result is not None:
        for name, value in entry.result.headers:  # the result route can serve them
            assert "\r" not in value and "\n" not in value and "\x00" not in value
            assert name and " " not in name and ":" not in name


def test_deep_nesting_huge_entries_and_non_objects_are_refused() -> None:
    deep = b'{"call_id": "a", "function": "f", "state": "queued", "x": ' + b"[" * 100_000
    deep += b"]" * 100_000 + b"}"
    for raw in (
        deep,
        b"[" * 200_000,
        b" " * (MAX_ENTRY_BYTES + 1),
        b"[1, 2]",
        b'"text"',
        b"\xff\xfe",
        b'{"call_id": "a", "function": "f", "state": "exploded"}',
        b'{"call_id": "a", "function": "f", "state": "queued", "attempts": true}',
        b'{"call_id": 7, "function": "f", "state": "queued"}',
        b'{"call_id": "a", "function": "f", "state": "succeeded", "result": {"status": Infinity}}',
    ):
        assert _read(raw) is None, raw[:80]


def test_stored_headers_that_could_not_be_served_are_left_out() -> None:
    result = {
        "status": 200,
        "body": "",
        "headers": [["X-Ok", "fine"], ["X-Bad", "a\r\nSet-Cookie: x=1"], ["Bad Name", "v"], [1, 2]],
    }
    raw = json.dumps({"call_id": "a", "function": "f", "state": "succeeded", "result": result})
    entry = _read(raw.encode())
    assert entry is not None and entry.result is not None
    assert entry.result.headers == [("X-Ok", "fine")]


def test_long_texts_from_a_message_are_never_kept_in_the_ledgers_caches() -> None:
    """A queued message names its callback URL and queue: each can be as long as the message.
    The results are the same, but only short texts are remembered."""
    url = "http://user:secret@receiver.example/" + "p" * 200_000
    queue = "q" * 200_000
    kept = (_public_url_kept.cache_info().currsize, _function_texts_kept.cache_info().currsize)
    assert public_url(url) == "http://receiver.example/" + "p" * (2048 - 24)
    assert function_texts("fn.team", queue) == ('"fn.team"', '"team"', f'"{queue}"')
    after = (_public_url_kept.cache_info().currsize, _function_texts_kept.cache_info().currsize)
    assert after == kept
    assert public_url("http://user:secret@receiver.example/cb") == "http://receiver.example/cb"
    assert function_texts("fn.team", "jobs") == ('"fn.team"', '"team"', '"jobs"')

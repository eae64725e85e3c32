"""Call ledger keys are bounded and valid whatever the call id; entries read back as written."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from asyncq.publisher import build_request
from ledger.entries import (
    MAX_TOKEN,
    CallEntry,
    CallState,
    StoredResult,
    call_token,
    cancel_key,
    entry_key,
    public_url,
)
from ledger.queued import queued_entry, queued_value

KV_KEY = re.compile(r"[-/_=.a-zA-Z0-9]+")


@given(st.text(max_size=5000))
def test_any_call_id_maps_to_a_short_valid_key(call_id: str) -> None:
    for key in (entry_key(call_id), cancel_key(call_id)):
        assert KV_KEY.fullmatch(key)
        assert len(key) <= len("cancel.") + MAX_TOKEN


def test_a_plain_id_is_its_own_token_and_others_are_hashed_apart_from_it() -> None:
    uuid = "0b4c1a8e-5f1e-4b3a-9c1d-2e3f4a5b6c7d"
    assert call_token(uuid) == uuid
    odd = "a b/c.d"
    assert call_token(odd).startswith("=") and "=" not in uuid
    assert call_token("x" * (MAX_TOKEN + 1)) != call_token("x" * MAX_TOKEN)
    assert call_token("x" * (MAX_TOKEN + 1)) != call_token("x" * (MAX_TOKEN + 2))


_texts = st.none() | st.text(max_size=40)
# what a function's answer can carry (ferry's own client reads no other)
_header_names = st.text(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=20,
)
_header_values = st.text(st.characters(blacklist_characters="\r\n\x00"), max_size=40)
_counts = st.none() | st.integers(0, 10**12)


@given(
    entry=st.builds(
        CallEntry,
        call_id=st.text(max_size=200),
        function=st.text(max_size=60),
        state=st.sampled_from(CallState),
        namespace=st.text(max_size=20),
        queue=st.text(max_size=20),
        attempts=st.integers(0, 1000),
        status=st.none() | st.integers(100, 599),
        queued_at=_texts,
        started_at=_texts,
        finished_at=_texts,
        next_attempt_at=_texts,
        updated_at=st.text(max_size=40),
        callback_url=_texts,
        callback_outcome=_texts,
        error=_texts,
        result_stored=st.booleans(),
        result_bytes=_counts,
        trace_id=_texts,
        result=st.none()
        | st.builds(
            StoredResult,
            status=st.integers(100, 599),
            content_type=st.text(max_size=40),
            duration_seconds=st.floats(0, 1e6),
            headers=st.lists(st.tuples(_header_names, _header_values), max_size=5),
            body=st.binary(max_size=300),
        ),
    )
)
def test_an_entry_reads_back_as_written(entry: CallEntry) -> None:
    raw = entry.encode()
    again = CallEntry.decode(raw)
    assert again.public() == entry.public()
    assert again.result == entry.result
    assert list(json.loads(raw))[: len(entry.public())] == list(entry.public())  # same order


def test_a_callback_url_is_kept_without_its_user_information_nor_query_values() -> None:
    assert public_url("https://user:secret@hooks.example/done?x=1&token=t0k&flag#f") == (
        "https://hooks.example/done?x=redacted&token=redacted&flag"
    )


@given(
    call_id=st.text(max_size=100),
    function=st.text(max_size=60),
    callback=st.sampled_from(["", "http://u:p@hooks.example/x?y=1"]),
)
def test_the_front_doors_quick_queued_entry_is_the_entry(
    call_id: str, function: str, callback: str
) -> None:
    request = build_request(
        function, headers=[("X-Call-Id", call_id)] if call_id else [], callback_url=callback
    )
    quick = CallEntry.decode(queued_value(request)).public()
    full = queued_entry(request).public()
    quick.pop("updated_at"), full.pop("updated_at")
    assert quick == full

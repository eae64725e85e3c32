"""`codec.encode` writes exactly what `json.dumps` of the Go-shaped object wrote before it was
made quicker (the encoder made once, the body's base64 put in place as bytes)."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asyncq import codec
from asyncq.codec import QueueRequest
from asyncq.gourl import go_url


def reference(request: QueueRequest) -> bytes:
    """The encoding as it was: one dict, `json.dumps`."""
    out: dict[str, Any] = {}
    if request.header:
        out["Header"] = request.header
    if request.host:
        out["Host"] = request.host
    if request.body:
        out["Body"] = base64.b64encode(request.body).decode("ascii")
    out["Method"] = request.method
    if request.path:
        out["Path"] = request.path
    if request.query_string:
        out["QueryString"] = request.query_string
    out["Function"] = request.function
    if request.queue_name:
        out["QueueName"] = request.queue_name
    for key, value in (
        ("Annotations", request.annotations),
        ("Labels", request.labels),
        ("Environment", request.environment),
    ):
        if value:
            out[key] = value
    if request.callback_url:
        out["CallbackUrl"] = go_url(request.callback_url)
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()


texts = st.text(max_size=20)  # any characters: quotes, controls, non-ASCII, surrogates aside
names = st.text(alphabet="abcXYZ-_.", min_size=1, max_size=12)
requests = st.builds(
    QueueRequest,
    function=names,
    method=st.sampled_from(["POST", "GET", "PUT"]),
    body=st.binary(max_size=300),
    header=st.dictionaries(names, st.lists(texts, max_size=3), max_size=4),
    host=texts,
    path=texts,
    query_string=texts,
    queue_name=texts,
    annotations=st.dictionaries(names, texts, max_size=3),
    labels=st.dictionaries(names, texts, max_size=2),
    environment=st.dictionaries(names, texts, max_size=2),
    callback_url=st.sampled_from(["", "http://127.0.0.1:9/cb?token=x", "https://u:p@h/a%2Fb#f"]),
)


@settings(max_examples=400, deadline=None)
@given(requests)
def test_encode_is_byte_for_byte_what_json_dumps_wrote(request: QueueRequest) -> None:
    assert codec.encode(request) == reference(request)


@settings(max_examples=200, deadline=None)
@given(requests)
def test_an_encoded_call_decodes_back_to_its_body_and_headers(request: QueueRequest) -> None:
    again = json.loads(codec.encode(request))
    assert base64.b64decode(again.get("Body", "")) == request.body
    assert again.get("Header", {}) == request.header

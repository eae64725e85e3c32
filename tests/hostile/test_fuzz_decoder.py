"""Fuzzing the QueueRequest decoder (stays in CI, bounded example counts).

Whatever bytes arrive, `decode` returns a request or raises `DecodeError` with a reason, never
anything else; and what it returns can be written as an HTTP request (or is refused as
`InvalidRequest`, which the worker dead-letters without retrying).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncq.codec import QueueRequest, decode, encode, function_of
from connectors.core.errors import DecodeError
from connectors.core.http1 import InvalidRequest
from connectors.core.http1.wire import encode_head, split_url
from connectors.core.targets import is_function_name, path_problem
from queue_worker.handler import invocation_of

COMPAT = sorted((Path(__file__).parents[1] / "compat").glob("*.json"))
KEYS = [
    "Header", "Host", "Body", "Method", "Path", "QueryString", "Function", "QueueName",
    "Annotations", "Labels", "Environment", "CallbackUrl",
]  # fmt: skip
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),  # may hold lone surrogates, CR, LF, NUL, ...
    st.sampled_from(["echo", "/a/../b", "/%2e%2e/x", "http://127.1/", "GET", "aGk=", "\ud800"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
keys = st.sampled_from(KEYS).flatmap(
    lambda key: st.sampled_from([key, key.lower(), key.upper(), key.swapcase()])
)
messages = st.dictionaries(st.one_of(keys, st.text(max_size=6)), json_values, max_size=8)


def _check(data: bytes) -> QueueRequest | None:
    try:
        request = decode(data)
    except DecodeError as exc:
        assert str(exc)  # a reason for the dead letter
        return None
    assert is_function_name(request.function)
    assert path_problem(request.path) is None
    call = invocation_of(request)
    try:
        origin, target = split_url("http://gateway:8080" + call.url_path())
        encode_head(call.method, target, origin, call.headers, len(request.body))
    except InvalidRequest:
        pass
    # what ferry writes (replay, ferry publish) it reads back, the call unchanged
    again = decode(encode(request))
    assert (again.function, again.path, again.body) == (
        request.function,
        request.path,
        request.body,
    )
    return request


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    _check(data)


@FUZZ
@given(messages, st.booleans())
def test_any_json_object_decodes_to_a_sendable_request_or_raises_decode_error(
    message: dict[str, Any], ascii_only: bool
) -> None:
    # ensure_ascii writes non-ASCII (and lone surrogates) as \\uXXXX escapes, as some clients do
    _check(json.dumps(message, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))


@FUZZ
@given(
    st.sampled_from(COMPAT),
    st.lists(st.tuples(st.integers(0, 4000), st.binary(min_size=0, max_size=3)), max_size=4),
)
def test_mangled_go_messages_decode_or_raise_decode_error(
    path: Path, edits: list[tuple[int, bytes]]
) -> None:
    data = bytearray(path.read_bytes())
    for offset, replacement in edits:
        at = offset % (len(data) + 1)
        data[at : at + len(replacement)] = replacement
    _check(bytes(data))


def test_the_shapes_that_once_cycled_for_ever_are_refused() -> None:
    for data in (
        b"[" * 100_000,
        b'{"Function":"echo","x":' + b"9" * 5000 + b"}",
        b'{"Function":"\\ud800"}',
    ):
        assert _check(data) is None


@FUZZ
@given(st.one_of(st.binary(max_size=256), messages.map(lambda m: json.dumps(m).encode())))
def test_the_sorter_reads_the_function_decode_would_or_refuses_with_decode_error(
    data: bytes,
) -> None:
    """fair mode's sorter reads only `Function`: whatever the message, it names the function
    the full decoder would, or raises DecodeError (never another error, which would stop it)."""
    try:
        function = function_of(data)
    except DecodeError:
        return
    with contextlib.suppress(DecodeError):  # the rest is refused by the worker that runs it
        assert decode(data).function == function

"""The QueueRequest codec reads every variant Go writes and writes what Go can read."""

from __future__ import annotations

import base64
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncq import codec, gourl
from asyncq.codec import QueueRequest, decode, encode
from asyncq.gourl import go_url, url_from_go
from connectors.core.errors import DecodeError
from tests.support.compat import COMPAT, ORIGINALS

VECTORS = sorted(COMPAT.glob("queue-request-*.json"))


def test_the_compat_vectors_are_present() -> None:
    assert len(VECTORS) >= 4


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.name)
def test_every_go_vector_decodes(path: Path) -> None:
    request = decode(path.read_bytes())
    assert request.function
    assert request.method


def test_the_full_vector_decodes_field_by_field() -> None:
    r = decode((COMPAT / "queue-request-full.json").read_bytes())
    assert r.function == "echo.openfaas-fn"
    assert r.path == "/sub/path"
    assert r.query_string == "a=1&b=two%20words"
    assert r.header["X-Multi"] == ["one", "two"]
    assert r.body == '{"order":42,"note":"héllo"}\n'.encode()
    assert r.callback == "http://receiver.example:8080/callback/result?token=a%20b&x=1"
    assert r.call_id == "5c1c4ee9-7a1b-4d3e-9d8e-2f4f0c0b7d11"


def test_the_binary_vector_keeps_raw_path_and_fragment() -> None:
    r = decode((COMPAT / "queue-request-binary-body.json").read_bytes())
    assert r.body == b"\x00\x01\x02\xfe\xff"
    assert r.queue_name == "slow-queue"
    assert r.callback == "https://hooks.example/path%2Fenc/cb#frag"


def test_pre2023_null_callback_means_none() -> None:
    assert decode((COMPAT / "queue-request-pre2023.json").read_bytes()).callback == ""


def test_keys_are_read_in_any_letter_case() -> None:
    r = decode(b'{"function": "f", "METHOD": "GET", "body": null, "callbackurl": "http://x/cb"}')
    assert (r.function, r.method, r.body, r.callback) == ("f", "GET", b"", "http://x/cb")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "expected a JSON object"),
        (b'{"Method": "POST"}', "Function is missing"),
        (b'{"Function": "f", "Body": "***"}', "Body is not valid base64"),
        (b'{"Function": "f", "Header": {"A": 1}}', "Header 'A'"),
        (b'{"Function": "f", "Header": {"X-A": ["1\\r\\nHost: evil"]}}', "CR, LF or NUL"),
        (b'{"Function": "f", "Header": {"Bad Name": ["1"]}}', "not a valid HTTP header name"),
        (b'{"Function": "f", "Method": "GET / HTTP/1.1\\r\\nX: y"}', "not a valid HTTP method"),
        (b'{"Function": "f", "CallbackUrl": 5}', "CallbackUrl"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_bad_messages_raise_decode_error_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(data)


def test_writes_the_shape_go_writes() -> None:
    full = json.loads((COMPAT / "queue-request-full.json").read_text())
    ours = json.loads(encode(decode(json.dumps(full).encode())))
    assert list(ours) == [k for k in full if k in ours]
    assert ours == full


def test_callback_is_written_as_a_go_url_object() -> None:
    written = json.loads(encode(QueueRequest(function="f", callback_url="https://h:1/p?q=1")))
    assert set(written["CallbackUrl"]) >= {"Scheme", "Host", "Path", "RawQuery", "User"}
    assert url_from_go(written["CallbackUrl"]) == "https://h:1/p?q=1"


@pytest.mark.parametrize(
    "url",
    [
        "http://a.example/x",
        "https://a.example:8443/p/q?x=1&y=a%20b",
        "https://hooks.example/path%2Fenc/cb#frag",
        "http://127.0.0.1:9000/callback",
    ],
)
def test_go_url_round_trips(url: str) -> None:
    assert url_from_go(go_url(url)) == url


text = st.text(st.characters(codec="utf-8"), max_size=20)
header_name = st.from_regex(r"X-[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True)
# What an HTTP header value can carry: anything but control characters (tab aside).
header_value = st.text(
    st.characters(codec="utf-8").filter(lambda c: c == "\t" or unicodedata.category(c) != "Cc"),
    max_size=20,
)


@given(
    function=st.from_regex(r"[a-z]([a-z0-9-]{0,19}[a-z0-9])?(\.[a-z]{1,8})?", fullmatch=True),
    body=st.binary(max_size=200),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    header=st.dictionaries(header_name, st.lists(header_value, min_size=1, max_size=3), max_size=4),
    path=st.from_regex(r"(/[a-z0-9]{1,5}){0,3}", fullmatch=True),
    query=st.from_regex(r"([a-z]=[a-z0-9%]{0,4}&?){0,3}", fullmatch=True),
    annotations=st.dictionaries(text, text, max_size=3),
    callback=st.sampled_from(["", "http://cb.example/x?y=1", "https://h:8443/a%2Fb"]),
)
def test_a_round_trip_is_lossless(
    function: str,
    body: bytes,
    method: str,
    header: dict[str, list[str]],
    path: str,
    query: str,
    annotations: dict[str, str],
    callback: str,
) -> None:
    request = QueueRequest(
        function=function,
        method=method,
        body=body,
        header=header,
        path=path,
        query_string=query,
        annotations=annotations,
        callback_url=callback,
    )
    assert decode(encode(request)) == request
    assert json.loads(encode(request)).get("Body", "") == base64.b64encode(body).decode()


@pytest.mark.skipif(not ORIGINALS.is_dir(), reason="shared/compat is not beside this checkout")
def test_the_copied_vectors_match_the_originals() -> None:
    originals = {p.name: p.read_bytes() for p in ORIGINALS.glob("queue-request-*.json")}
    copies = {p.name: p.read_bytes() for p in COMPAT.glob("queue-request-*.json")}
    assert copies == originals


def test_the_sorter_reads_the_function_as_decode_does() -> None:
    data = b'{"function": "first", "Function": "second", "Body": "not base64 !"}'
    assert codec.function_of(data) == "first"  # Go takes the first spelling it meets
    with pytest.raises(codec.InvalidFunctionName):
        codec.function_of(b'{"Function": "../etc"}')
    with pytest.raises(DecodeError):
        codec.function_of(b'{"Body": ""}')
    with pytest.raises(DecodeError):
        codec.function_of(b"[1]")


_URL_PART = st.one_of(
    st.none(), st.just(""), text, st.integers(), st.booleans(), st.lists(st.integers(), max_size=1)
)


def _long_way(obj: dict[str, object]) -> str:
    """How a canonical Go url.URL object reads without the kept URLs: no host, no callback."""
    host = obj.get("Host")
    if host is None or host == "":
        return ""
    if not isinstance(host, str):
        raise DecodeError("Host must be a string")
    return url_from_go(obj)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            key: _URL_PART
            for key in ("Scheme", "Opaque", "Host", "Path", "RawPath", "RawQuery", "Fragment")
        },
    )
)
def test_a_kept_callback_url_reads_as_the_long_way_does(obj: dict[str, object]) -> None:
    message = json.dumps({"Function": "f", "CallbackUrl": obj}).encode()
    try:
        expected = _long_way(obj)
    except DecodeError:
        with pytest.raises(DecodeError):
            decode(message)
        return
    assert decode(message).callback_url == expected
    assert decode(message).callback_url == expected  # and again, kept from the first time


def test_callback_urls_are_kept_a_while_and_the_keeping_is_bounded() -> None:
    def callback_of(host: str, path: str = "/cb") -> str:
        url = {"Scheme": "http", "Host": host, "Path": path, "RawQuery": "", "User": None}
        return decode(json.dumps({"Function": "f", "CallbackUrl": url}).encode()).callback_url

    callback_of("kept.example")
    hits = gourl._url_kept.cache_info().hits
    assert callback_of("kept.example") == "http://kept.example/cb"
    assert gourl._url_kept.cache_info().hits == hits + 1
    for n in range(1000):
        assert callback_of(f"h{n}.example") == f"http://h{n}.example/cb"
    assert gourl._url_kept.cache_info().currsize <= 256
    misses = gourl._url_kept.cache_info().misses
    long_path = "/" + "p" * 600
    assert callback_of("kept.example", long_path) == "http://kept.example" + long_path
    assert gourl._url_kept.cache_info().misses == misses  # worked out, never kept


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16-le", "utf-16-be", "utf-32-le"])
def test_a_message_in_any_encoding_json_reads_still_decodes(encoding: str) -> None:
    """UTF-8 that opens with "{" is read straight; whatever else json.loads reads, it reads."""
    text = json.dumps({"Function": "f", "Path": "/é", "Body": None}, ensure_ascii=False)
    request = decode(text.encode(encoding))
    assert (request.function, request.path) == ("f", "/é")

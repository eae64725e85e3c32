"""Hostile `CallbackUrl` objects in Go's url.URL form: each reads as a URL string the way every
other does (the callback guard then judges it), or is refused with DecodeError; none is kept
when long, and the kept ones stay bounded."""

from __future__ import annotations

import json

import pytest

from asyncq import gourl
from asyncq.codec import decode
from connectors.core.errors import DecodeError


def callback_of(url: dict[str, object]) -> str:
    return decode(json.dumps({"Function": "f", "CallbackUrl": url}).encode()).callback_url


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"Host": "h", "Path": "/a/%2e%2e/%2E%2E/admin"}, "//h/a/%252e%252e/%252E%252E/admin"),
        ({"Scheme": "http", "Host": "h", "Path": "/../../etc"}, "http://h/../../etc"),
        (
            {"Scheme": "http", "Host": "h", "Path": "/cb", "RawQuery": "a=\r\nb"},
            "http://h/cb?a=\r\nb",
        ),
        ({"Scheme": "http", "Host": "h\r\nX-Evil: 1", "Path": "/"}, "http://h\r\nX-Evil: 1/"),
        ({"Scheme": "http", "Host": "h", "Path": "/\x00"}, "http://h/%00"),
    ],
)
def test_odd_text_reads_as_it_would_the_long_way(fields: dict[str, object], expected: str) -> None:
    """The worker's callback sender refuses what cannot be a request line or a safe target;
    the decoder's job is only to read the object as Go would print it."""
    assert callback_of(fields) == expected
    assert callback_of(fields) == gourl.url_from_go(fields)  # again, kept from the first time


@pytest.mark.parametrize(
    "fields",
    [
        {"Scheme": "http", "Host": "h", "Path": ["/"]},
        {"Scheme": 1, "Host": "h"},
        {"Scheme": "http", "Host": "h", "RawQuery": {"a": "b"}},
        {"Scheme": "http", "Host": True},
    ],
)
def test_a_field_of_the_wrong_type_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(DecodeError):
        callback_of(fields)


def test_a_huge_url_is_read_and_never_kept() -> None:
    host = "h" * 100_000
    misses = gourl._url_kept.cache_info().misses
    assert callback_of({"Scheme": "http", "Host": host, "Path": "/cb"}) == f"http://{host}/cb"
    assert gourl._url_kept.cache_info().misses == misses
    assert gourl._url_kept.cache_info().currsize <= 256

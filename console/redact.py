"""What the console never shows: passwords in URLs, query values (tokens ride there), and the
values of headers that carry credentials. Names stay, so an operator still sees the shape."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HIDDEN = "(hidden)"
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
SECRET_WORDS = ("token", "secret", "password", "signature", "key", "auth", "session")


def public_url(url: str) -> str:
    """`url` without user information and with every query value replaced."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return HIDDEN
    host = parts.netloc.rpartition("@")[2]
    query = urlencode([(name, HIDDEN) for name, _ in parse_qsl(parts.query, True)])
    return urlunsplit((parts.scheme, host, parts.path, query, ""))[:2048]


def secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_HEADERS or any(word in lowered for word in SECRET_WORDS)


def public_headers(headers: Mapping[str, list[str]]) -> list[tuple[str, str]]:
    """Header pairs in order, the values of credential-bearing ones hidden."""
    return [
        (name, HIDDEN if secret_header(name) else value)
        for name, values in list(headers.items())[:200]
        for value in values[:20]
    ]

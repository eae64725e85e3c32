"""What the console never shows: passwords in URLs, query values (tokens ride there), and the
values of headers that carry credentials. Names stay, so an operator still sees the shape."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.core.urlguard import shown_url

HIDDEN = "(hidden)"
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
SECRET_WORDS = ("token", "secret", "password", "signature", "key", "auth", "session")


def public_url(url: str) -> str:
    """`url` as ferry shows callback URLs everywhere (`urlguard.shown_url`)."""
    return shown_url(url) if url else ""


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

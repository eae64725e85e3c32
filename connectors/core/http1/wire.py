"""What goes out on the wire: the URL split into origin and target, the request head, and the
checks that keep a request from breaking HTTP/1.1 framing."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

# A header name (and a method) is an RFC 9110 token; a value may hold anything but CR, LF, NUL.
TOKEN_PATTERN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN = re.compile(TOKEN_PATTERN.encode())
_TOKEN_TEXT = re.compile(TOKEN_PATTERN)
VALID_NAMES: set[str | bytes] = set()  # the tokens seen (bounded): read, never written, elsewhere
VALID_NAMES_MAX = 4096
VALID_NAME_CHARS = 64  # longer tokens are checked each time, never kept: 4096 x 64 at most


class HttpError(Exception):
    """The exchange failed: no connection, the connection broke, or the answer was malformed."""


class InvalidRequest(ValueError):
    """The request cannot be written as asked (a bad URL or a header that breaks framing)."""


# Methods whose request head carries no Content-Length when the body is empty.
NO_LENGTH_WHEN_EMPTY = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


def is_token(name: str | bytes) -> bool:
    """True for an RFC 9110 token: a header name or a method (remembered: the same few names
    come on every call)."""
    if name in VALID_NAMES:
        return True
    pattern = _TOKEN_TEXT if isinstance(name, str) else _TOKEN
    if pattern.fullmatch(name) is None:  # type: ignore[arg-type]
        return False
    if len(VALID_NAMES) < VALID_NAMES_MAX and len(name) <= VALID_NAME_CHARS:
        VALID_NAMES.add(name)
    return True


def is_header_value(value: str) -> bool:
    """False if `value` holds CR, LF or NUL, which would end the header or the head early."""
    return "\r" not in value and "\n" not in value and "\x00" not in value


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int
    # The Host header: the port only when it is not the scheme's default. Worked out once,
    # as every request's head carries it.
    authority: str = field(init=False, compare=False, repr=False)
    # An origin keys the idle connections, looked up twice per request: hashed once.
    _hash: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        authority = host if self.port == default else f"{host}:{self.port}"
        object.__setattr__(self, "authority", authority)
        object.__setattr__(self, "_hash", hash((self.scheme, self.host, self.port)))

    def __hash__(self) -> int:
        return self._hash


@functools.lru_cache(maxsize=1024)
def split_url(url: str) -> tuple[Origin, str]:
    """(origin, request target) of an absolute http(s) URL; InvalidRequest if it is not one.

    What may not appear raw in a request line (spaces, controls, non-ASCII) is percent-encoded
    as UTF-8, and existing %XX escapes are kept, as aiohttp's URL handling does; a non-ASCII
    host name is sent in its IDNA form.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"malformed URL {url!r}: {exc}") from None
    host = parts.hostname
    if parts.scheme not in {"http", "https"} or not host:
        raise InvalidRequest(f"{url!r} is not an absolute http(s) URL")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidRequest(f"host {host!r} is not a valid name: {exc}") from None
    origin = Origin(parts.scheme, host, port or (443 if parts.scheme == "https" else 80))
    target = quote(parts.path, safe=_PATH_SAFE) or "/"
    if parts.query:
        target = f"{target}?{quote(parts.query, safe=_QUERY_SAFE)}"
    return origin, target


def as_sent_text(received: str) -> str:
    """A header value as an answer was read (one character per byte, `answer.py`) turned into
    the text `encode_head` writes back as the same bytes: forwarding never re-encodes."""
    try:
        raw = received.encode("latin-1")
    except UnicodeEncodeError:
        return received  # not one character per byte: it is text already
    return raw.decode("utf-8", "surrogateescape")


# Characters a path or query may hold as they are (RFC 3986), "%" kept for existing escapes.
_PATH_SAFE = "/:@!$&'()*+,;=%~"
_QUERY_SAFE = _PATH_SAFE + "?"


def encode_head(
    method: str,
    target: str,
    origin: Origin,
    headers: Iterable[tuple[str, str]],
    length: int,
    lines_after: str = "",
) -> bytes:
    """Request line and headers, with Host and Content-Length set here and nowhere else;
    `lines_after` holds more header lines as `header_lines` wrote them (headers many requests
    share, checked and written once), after `headers`.

    Always UTF-8, whatever the other headers hold, so a value's bytes never depend on its
    neighbours. Bytes that arrived undecodable (aiohttp's and `as_sent_text`'s surrogate
    escapes) go out as the same bytes.
    """
    if not is_token(method):
        raise InvalidRequest(f"method {method[:40]!r} is not a valid token")
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {origin.authority}\r\n"]
    _add_lines(lines, headers)
    if lines_after:
        lines.append(lines_after)
    if length or method not in NO_LENGTH_WHEN_EMPTY:
        lines.append(f"Content-Length: {length}\r\n")
    lines.append("\r\n")
    return _encoded("".join(lines))


def header_lines(headers: Iterable[tuple[str, str]]) -> str:
    """Header lines as `encode_head` writes them, with the same checks (InvalidRequest, also
    for text that is not UTF-8), for its `lines_after`."""
    lines: list[str] = []
    _add_lines(lines, headers)
    text = "".join(lines)
    _encoded(text)  # only to refuse up front what encode_head would refuse
    return text


def _add_lines(lines: list[str], headers: Iterable[tuple[str, str]]) -> None:
    for name, value in headers:
        if name not in VALID_NAMES and not is_token(name):
            raise InvalidRequest(f"header name {name!r} is not a valid token")
        # printable text holds no CR, LF or NUL: one pass in C decides the usual value
        if not value.isprintable() and not is_header_value(value):
            raise InvalidRequest(f"header {name} holds a CR, LF or NUL character")
        lines.append(f"{name}: {value}\r\n")


def _encoded(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"a header holds text that is not UTF-8: {exc.reason}") from None

"""What a call may name: the function, and the path that follows it.

ferry takes function names as OpenFaaS does (a DNS-1123 label, optionally `.namespace`, itself a
label), so a name from a message or a request can never reach a broker subject, a log line or
an upstream URL as anything else. A path may not hold dot segments (`.`, `..`), raw or
percent-encoded, nor an encoded slash or backslash inside a segment: an upstream that resolves
them would let `/function/echo/../../system/...` reach a route the caller was never given.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

LABEL_MAX = 63
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FUNCTION_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})?")
_ONE_LABEL = re.compile(_LABEL)
_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c)", re.IGNORECASE)
_DOT_SEGMENTS = frozenset({".", ".."})


_KNOWN_NAMES: set[str] = set()  # names seen valid: the same few come with every message
_KNOWN_NAMES_MAX = 4096


def is_function_name(text: str) -> bool:
    """True for `name` or `name.namespace`, each a DNS-1123 label (at most 63 of a-z, 0-9, -)."""
    if text in _KNOWN_NAMES:
        return True
    if len(text) > 2 * LABEL_MAX + 1 or _FUNCTION_NAME.fullmatch(text) is None:
        return False
    if len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
        _KNOWN_NAMES.add(text)
    return True


def is_label(text: str) -> bool:
    """True for one DNS-1123 label: what a function's name and its namespace each must be."""
    return len(text) <= LABEL_MAX and _ONE_LABEL.fullmatch(text) is not None


def function_name_problem(text: str) -> str | None:
    """Why `text` is not a function name, or None if it is one."""
    if is_function_name(text):
        return None
    return (
        f"function name {shorten(text)} is not a DNS-1123 label (a-z, 0-9, '-', at most "
        f"{LABEL_MAX} characters), optionally followed by .namespace"
    )


def path_problem(path: str) -> str | None:
    """Why a request path must not be sent on, or None if it is safe.

    `path` is the raw (still percent-encoded) path, without its query."""
    if "." not in path and "%" not in path:
        return None  # most paths: no dot, no escape
    for segment in path.split("/"):
        if not segment:
            continue
        if "%" in segment:
            if _ENCODED_SEPARATOR.search(segment):
                return f"path {shorten(path)} has an encoded '/' or '\\' in a segment"
            segment = unquote(segment)
        if segment in _DOT_SEGMENTS:
            return f"path {shorten(path)} has a '.' or '..' segment"
    return None


def shorten(text: str, limit: int = 80) -> str:
    """`text` quoted for a message, cut to `limit` characters (input may be any length)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"

"""What a call may name: the function, the path that follows it, and its own id.

ferry takes function names as OpenFaaS does (a DNS-1123 label, optionally `.namespace`, itself a
label), so a name from a message or a request can never reach a broker subject, a log line or
an upstream URL as anything else. A path may not hold dot segments (`.`, `..`), raw or
percent-encoded, nor an encoded slash or backslash inside a segment: an upstream that resolves
them would let `/function/echo/../../system/...` reach a route the caller was never given.
A caller-chosen call id must be one the call routes can address (`/system/calls/{id}`) and short
enough to log: OpenFaaS makes UUIDs; ferry's connectors make `topic-partition-offset`,
`function:unix_ms` and SQS message ids, all within the same alphabet.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import unquote

LABEL_MAX = 63
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FUNCTION_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})?")
_ONE_LABEL = re.compile(_LABEL)
_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c)", re.IGNORECASE)
_DOT_SEGMENTS = frozenset({".", ".."})

CALL_ID_MAX = 128
# Characters a path segment carries as they are (RFC 3986 unreserved, plus ':', '@', '+', '=',
# which no router or shell argument reads differently): no '/', '%', '?', '#' or space.
_CALL_ID = re.compile(r"[A-Za-z0-9._~:@+=-]+")
_NOT_IN_CALL_ID = re.compile(r"[^A-Za-z0-9._~:@+=-]")


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


def call_id_problem(text: str) -> str | None:
    """Why a caller's `X-Call-Id` cannot be taken, or None if it can."""
    if len(text) > CALL_ID_MAX:
        return f"X-Call-Id is {len(text)} characters long; at most {CALL_ID_MAX} are accepted"
    if _CALL_ID.fullmatch(text) is None or text in _DOT_SEGMENTS:
        return (
            f"X-Call-Id {shorten(text)} cannot be addressed by /system/calls/{{id}}: use letters, "
            "digits and - . _ ~ : @ + = (a UUID, as OpenFaaS makes, is fine)"
        )
    return None


def addressable_call_id(text: str) -> str:
    """`text` if the front door takes it as an `X-Call-Id`, else a stand-in it takes: the
    allowed characters of its start and a digest of the whole, the same wherever it is made,
    so a connector's deterministic ids (a long Kafka topic's, a cron slot of a long name) still
    let JetStream store a re-sent call once."""
    if call_id_problem(text) is None:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    kept = _NOT_IN_CALL_ID.sub("_", text[:80])
    return f"{kept}~{digest}"


def short_id(call_id: str) -> str:
    """A call id for a log line or a listing: whole up to `CALL_ID_MAX` characters, else cut
    there and marked (ids other publishers queued may be any length)."""
    if len(call_id) <= CALL_ID_MAX:
        return call_id
    return call_id[:CALL_ID_MAX] + "…"

"""How a source's bytes and text become HTTP header values, by one rule for every connector.

A header value on the wire is UTF-8 (`http1.wire`), but HTTP cannot carry every value as it
is: line breaks (every one `str.splitlines` knows, U+0085 and U+2028 too) and other control
characters would break the request or a reader's lines, and parsers trim leading and trailing
spaces. So text that is printable UTF-8 with no edge spaces is sent as it
is (the function reads the same UTF-8 bytes); anything else is sent base64-encoded with a
companion `{name}-Enc: b64` header, and a null value is sent empty with `{name}-Enc: null`.
A function can always tell empty from null and recover the exact bytes.
"""

from __future__ import annotations

import base64
import re

ENC_SUFFIX = "-Enc"
BASE64 = "b64"
NULL = "null"


# What a value sent as it is must not hold: C0 and C1 controls and DEL (every line break
# `str.splitlines` knows but two is one of them: LF, VT, FF, CR, FS, GS, RS and NEL, U+0085),
# the line and paragraph separators U+2028 and U+2029 (the other two), and lone surrogates,
# which are not text UTF-8 can carry.
_NOT_AS_IT_IS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text: str) -> bool:
    """True when `text` survives as a header value byte for byte, with no line break any
    reader could split it at."""
    if text.isascii():  # the usual case, in C: ASCII is printable from space to tilde
        return text.isprintable() and text == text.strip(" ")
    return _NOT_AS_IT_IS.search(text) is None and text == text.strip(" ")


def header_text(value: bytes) -> str | None:
    """`value` as header text, or None when it must be base64-encoded."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if printable(text) else None


def base64_header(name: str, value: bytes) -> list[tuple[str, str]]:
    return [(name, base64.b64encode(value).decode("ascii")), (name + ENC_SUFFIX, BASE64)]


def bytes_header(name: str, value: bytes | None) -> list[tuple[str, str]]:
    """The header(s) for a value that is bytes (a Kafka key or header value), or null."""
    if value is None:
        return [(name, ""), (name + ENC_SUFFIX, NULL)]
    text = header_text(value)
    if text is not None:
        return [(name, text)]
    return base64_header(name, value)


def text_header(name: str, text: str) -> list[tuple[str, str]]:
    """The header(s) for a value that is text (an SQS string attribute)."""
    if printable(text):
        return [(name, text)]
    return base64_header(name, text.encode("utf-8", "surrogatepass"))

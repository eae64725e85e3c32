"""Header values on NATS messages that survive any text: ferry's own and other clients'.

NATS headers are lines of text, and nats-py reads a stored message's headers with the email
parser, which hands back a non-ASCII value as an `email.header.Header` (and a CR or LF would end
the line). So a value ferry writes that is not plain printable ASCII goes out as one RFC 2047
encoded word (`=?utf-8?b?...?=`), which every reader passes through as it is, and reading turns
whatever a header holds, encoded word, `Header` or string, back into `str`.
"""

from __future__ import annotations

import base64
import binascii
import re
from email.header import Header, decode_header

VALUE_LIMIT = 1024  # characters of a value ferry writes; values come from input
_PLAIN = re.compile(r"[!-~](?:[ -~]*[!-~])?")
_ENCODED = re.compile(r"=\?utf-8\?b\?([A-Za-z0-9+/=]*)\?=")


def encode_value(text: str, limit: int = VALUE_LIMIT) -> str:
    """`text` (at most `limit` characters of it) as a header value that reads back unchanged."""
    text = text[:limit]
    if not text or (_PLAIN.fullmatch(text) and not text.startswith("=?")):
        return text
    raw = text.encode("utf-8", "surrogatepass")
    return f"=?utf-8?b?{base64.b64encode(raw).decode('ascii')}?="


def decode_value(value: object) -> str:
    """The text of a header value as nats-py returns it; never raises."""
    if isinstance(value, Header):
        text = "".join(
            part.decode("utf-8", "replace") if isinstance(part, bytes) else part
            for part, _ in decode_header(value)
        )
    else:
        text = str(value)
    match = _ENCODED.fullmatch(text)
    if match is None:
        return text
    try:
        return base64.b64decode(match.group(1), validate=True).decode("utf-8", "surrogatepass")
    except (binascii.Error, ValueError):
        return text


def decode_headers(headers: object) -> dict[str, str]:
    """Every header of a stored message as text (nats-py gives a dict, or None for none)."""
    if not isinstance(headers, dict):
        return {}
    return {str(name): decode_value(value) for name, value in headers.items()}

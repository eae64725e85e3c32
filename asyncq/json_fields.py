"""Reading fields of a JSON object Go wrote: keys matched in any letter case (as Go's
encoding/json matches them), and text fields checked for their type (DecodeError if not)."""

from __future__ import annotations

from typing import Any

from connectors.core.errors import DecodeError


def fold_keys(
    raw: dict[str, Any], known: tuple[str, ...], spelled: frozenset[str]
) -> dict[str, Any]:
    """`raw` with its keys in the canonical spelling (Go matches keys case-insensitively)."""
    if spelled.issuperset(raw):
        return raw  # what Go and ferry write: nothing to fold
    canonical = {k.lower(): k for k in known}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = canonical.get(key.lower())
        if name is not None and name not in out:
            out[name] = value
    return out


def text_field(fields: dict[str, Any], key: str) -> str:
    """The text at `key` ("" if absent or null); DecodeError if it is not text."""
    value = fields.get(key)
    if value.__class__ is str:
        return value
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DecodeError(f"{key} must be a string, got {type(value).__name__}")
    return value

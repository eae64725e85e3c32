"""Go's `url.URL` as encoding/json writes it, the form a QueueRequest's `CallbackUrl` takes:
made from a URL string, and read back into one as `url.URL.String()` does."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit

from asyncq.json_fields import fold_keys, text_field

# every field Go's url.URL marshals, so an object written by Go is taken as it is
GO_URL_FIELDS = frozenset(
    (
        "Scheme",
        "Opaque",
        "User",
        "Host",
        "Path",
        "RawPath",
        "OmitHost",
        "ForceQuery",
        "RawQuery",
        "Fragment",
        "RawFragment",
    )
)
_URL_KEYS = ("Scheme", "Opaque", "User", "Host", "Path", "RawPath", "RawQuery", "Fragment")
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def go_url(url: str) -> dict[str, Any]:
    """Go's `url.URL` JSON object for `url` (what `url.Parse(url)` marshals to)."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    raw_path = parts.path if quote(path, safe=_PATH_SAFE) != parts.path else ""
    user: dict[str, Any] | None = {} if "@" in parts.netloc else None
    return {
        "Scheme": parts.scheme,
        "Opaque": "",
        "User": user,
        "Host": parts.netloc.rsplit("@", 1)[-1],
        "Path": path,
        "RawPath": raw_path,
        "OmitHost": False,
        "ForceQuery": False,
        "RawQuery": parts.query,
        "Fragment": unquote(parts.fragment),
        "RawFragment": "",
    }


def url_from_go(obj: dict[str, Any]) -> str:
    """Rebuild a URL string from Go's `url.URL` object, as `url.URL.String()` does
    (DecodeError if a field it reads is not text)."""
    return _url_of(fold_keys(obj, _URL_KEYS, GO_URL_FIELDS))


def callback_from_go(obj: dict[str, Any]) -> str:
    """The callback URL a `CallbackUrl` object names: "" for Go's zero `url.URL` (no host)."""
    fields = fold_keys(obj, _URL_KEYS, GO_URL_FIELDS)
    if not text_field(fields, "Host"):
        return ""  # Go's zero url.URL: no callback
    return _url_of(fields)


def _url_of(fields: dict[str, Any]) -> str:
    """The URL of folded `url.URL` fields. A caller uses few callback URLs, so each is rebuilt
    once and kept (256; with over 512 characters of parts, rebuilt each time)."""
    scheme = text_field(fields, "Scheme")
    opaque = text_field(fields, "Opaque")
    if opaque:
        return f"{scheme}:{opaque}"
    raw_path = text_field(fields, "RawPath")
    path = "" if raw_path else text_field(fields, "Path")  # a raw path stands for the path
    fragment = text_field(fields, "Fragment")
    parts = (scheme, text_field(fields, "Host"), path, raw_path, text_field(fields, "RawQuery"))
    if sum(map(len, parts)) + len(fragment) <= _URL_KEPT_CHARS:
        return _url_kept(*parts, fragment)
    return _url_text(*parts, fragment)


def _url_text(scheme: str, host: str, path: str, raw_path: str, query: str, fragment: str) -> str:
    text = SplitResult(scheme, host, raw_path or quote(path, safe=_PATH_SAFE), query, "").geturl()
    return text + (f"#{quote(fragment, safe='')}" if fragment else "")


_URL_KEPT_CHARS = 512  # longer URLs are rebuilt each time: 256 x 512 characters kept at most
_url_kept = functools.lru_cache(maxsize=256)(_url_text)

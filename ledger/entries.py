"""The call ledger's entries and keys: what became of each async call, kept in a KV bucket.

One entry per call id, under `call.<token>`; a cancel leaves a marker under `cancel.<token>`,
which is all the workers watch. A call id that is not a short plain token maps to a bounded
hash token, so no key is ever built from unbounded input; the entry keeps the real id.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.core.http1.wire import is_header_value, is_token
from connectors.core.numbers import ascii_int
from connectors.core.urlguard import shown_url

DEFAULT_BUCKET = "faas-calls"
DEFAULT_TTL_SECONDS = 24 * 3600.0
DEFAULT_RESULT_MAX_BYTES = 64 * 1024
RESULT_MAX_BYTES_LIMIT = 512 * 1024  # an entry must stay well under NATS's message size
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MIN_MAX_BYTES = 1024 * 1024
# A stored answer may take at most this share of the bucket (1/RESULT_SHARE), so a few big
# answers cannot push out every other call's entry at once.
RESULT_SHARE = 128
MAX_TOKEN = 128
MAX_ENTRY_BYTES = 1024 * 1024  # an entry read back larger than this is refused, not parsed
_PLAIN_TOKEN = re.compile(rf"[-_a-zA-Z0-9]{{1,{MAX_TOKEN}}}")
ENTRY_PREFIX = "call."
CANCEL_PREFIX = "cancel."


class CallState(enum.StrEnum):
    SCHEDULED = "scheduled"  # a delayed call: `next_attempt_at` is when it is due
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # not run: past its expiry when a worker took it

    @property
    def final(self) -> bool:
        return self in (
            CallState.SUCCEEDED,
            CallState.FAILED,
            CallState.CANCELLED,
            CallState.EXPIRED,
        )

    @property
    def cancellable(self) -> bool:
        return self in (CallState.SCHEDULED, CallState.QUEUED, CallState.RETRYING)


def call_token(call_id: str) -> str:
    """The key token of a call id: the id itself if it is a plain short token, else a hash.

    Hash tokens start with `=`, which a plain token never contains, so the two cannot meet."""
    if _PLAIN_TOKEN.fullmatch(call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()
    return "=" + digest[:48]


def entry_key(call_id: str) -> str:
    return ENTRY_PREFIX + call_token(call_id)


def cancel_key(call_id: str) -> str:
    return CANCEL_PREFIX + call_token(call_id)


def now_text() -> str:
    return rfc3339(time.time())


_SECONDS_KEPT = 64
_second_texts: dict[int, str] = {}  # whole seconds formatted lately, and their text


def rfc3339(seconds: float) -> str:
    """UTC with milliseconds (`2026-12-02T07:27:23.850+00:00`); each whole second's date and
    time of day is formatted once and kept a while, since every state change of every call
    needs two or three times (now, when it started, when it was queued)."""
    whole = int(seconds)
    text = _second_texts.get(whole)
    if text is None:
        if len(_second_texts) >= _SECONDS_KEPT:
            _second_texts.clear()
        text = _second_texts[whole] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    millis = int((seconds - whole) * 1000)
    if 0 <= millis < 1000:
        return text + _MILLIS_TEXTS[millis]
    return f"{text}.{millis:03d}+00:00"


_MILLIS_TEXTS = [f".{millis:03d}+00:00" for millis in range(1000)]  # each written once


def start_time_text(start_time: str) -> str | None:
    """X-Start-Time (Unix nanoseconds, as OpenFaaS sets it) as a time, or None if it is not."""
    nanoseconds = ascii_int(start_time, 20)
    return None if nanoseconds is None else rfc3339(nanoseconds / 1e9)


# Texts from a message longer than this are worked out each time: the caches below keep only
# short ones, so a message cannot make them hold what it sends.
CACHED_TEXT_CHARS = 512


def public_url(url: str) -> str:
    """A callback URL without what may hold a secret: user information and query values."""
    return _public_url_kept(url) if len(url) <= CACHED_TEXT_CHARS else shown_url(url)


_public_url_kept = functools.lru_cache(maxsize=256)(shown_url)  # most calls use a few URLs


@dataclass(frozen=True)
class StoredResult:
    """The function's final answer, as the result route serves it."""

    status: int
    content_type: str
    duration_seconds: float
    headers: list[tuple[str, str]]
    body: bytes

    def encode_json(self) -> str:
        return result_json(
            self.status, self.content_type, self.duration_seconds, self.headers, self.body
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoredResult:
        return cls(
            status=int(data["status"]),
            content_type=str(data.get("content_type") or ""),
            duration_seconds=float(data.get("duration_seconds") or 0.0),
            headers=[
                (k, v)
                for k, v in data.get("headers") or []
                if isinstance(k, str) and isinstance(v, str) and is_token(k) and is_header_value(v)
            ],
            body=base64.b64decode(data.get("body") or ""),
        )


@dataclass
class CallEntry:
    """What the ledger knows about one call. `result` is kept apart from what GET shows."""

    call_id: str
    function: str
    state: CallState
    namespace: str = ""
    queue: str = ""
    attempts: int = 0
    status: int | None = None
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    next_attempt_at: str | None = None
    updated_at: str = field(default_factory=now_text)
    callback_url: str | None = None
    callback_outcome: str | None = None
    error: str | None = None
    result_stored: bool = False
    result_bytes: int | None = None
    trace_id: str | None = None  # of the `traceparent` the queued call carries (tracing.md)
    result: StoredResult | None = None

    def public(self) -> dict[str, Any]:
        """The entry as the API and the CLI show it (the stored body is not part of it)."""
        data = {name: getattr(self, name) for name in _SHOWN}  # shallow: asdict copies deeply
        data["state"] = self.state.value
        return data

    def encode(self) -> bytes:
        """Compact JSON from one template: about a sixth of `json.dumps`'s CPU, which matters
        because the front door and the queue worker each encode one for every call."""
        text = json_text
        return _ENTRY.format(
            text(self.call_id),
            text(self.function),
            text(self.state.value),
            text(self.namespace),
            text(self.queue),
            _int_text(self.attempts),
            _int_text(self.status),
            text(self.queued_at),
            text(self.started_at),
            text(self.finished_at),
            text(self.next_attempt_at),
            text(self.updated_at),
            text(self.callback_url),
            text(self.callback_outcome),
            text(self.error),
            "true" if self.result_stored else "false",
            _int_text(self.result_bytes),
            text(self.trace_id),
            "" if self.result is None else ',"result":' + self.result.encode_json(),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> CallEntry:
        """Parse an entry; ValueError if it is not one (too big, not JSON, fields missing)."""
        if len(raw) > MAX_ENTRY_BYTES:
            raise ValueError("entry too large")
        try:
            data = json.loads(raw)
        except (RecursionError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a call entry: {exc}") from None
        return cls.from_data(data)

    @classmethod
    def from_data(cls, data: Any) -> CallEntry:
        """An entry from its decoded JSON; ValueError if it is not one."""
        try:
            result = data.pop("result", None)
            known = {k: v for k, v in data.items() if k in _FIELDS}
            for name, value in known.items():
                kind = _KINDS[name]
                if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                    raise TypeError(f"{name} is not {_FIELD_TYPES[name]}")
            known["state"] = CallState(known["state"])
            entry = cls(**known)
            if isinstance(result, dict):
                entry.result = StoredResult.from_json(result)
        except (
            KeyError,
            TypeError,
            AttributeError,
            RecursionError,
            OverflowError,
            json.JSONDecodeError,
        ) as exc:
            raise ValueError(f"not a call entry: {exc}") from None
        return entry


_SHOWN = tuple(name for name in CallEntry.__dataclass_fields__ if name != "result")
_FIELDS = frozenset(_SHOWN)
# what each field may hold when an entry is read back (anyone with access can write the bucket)
_FIELD_TYPES = {name: str(CallEntry.__dataclass_fields__[name].type) for name in _SHOWN}
_KIND_OF: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "str | None": (str, type(None)),
    "int": int,
    "int | None": (int, type(None)),
    "bool": bool,
    "CallState": str,
}
_KINDS = {name: _KIND_OF[kind] for name, kind in _FIELD_TYPES.items()}
_quote = json.encoder.encode_basestring_ascii
quote = _quote  # a str as JSON text (ASCII only), for the quick writers


def entry_template(fixed: Mapping[str, str] | None = None, *, result: bool = True) -> str:
    """An entry as a format string, its fields in `encode`'s order: the JSON text (or format
    field) in `fixed` for those named there, `{}` for each other value, then `{}` for the
    stored result unless `result` is False. The quick writers fill them in order."""
    fixed = fixed or {}
    fields = ",".join(f'"{name}":{fixed.get(name, "{}")}' for name in _SHOWN)
    return "{{" + fields + ("{}" if result else "") + "}}"


_ENTRY = entry_template()


def result_json(
    status: int,
    content_type: str,
    duration: float,
    headers: Iterable[tuple[str, str]],
    body: bytes,
) -> str:
    """A stored answer as compact JSON, written directly (the body in base64): the queue
    worker stores one with most calls it finishes, so this is on its hot path."""
    pairs = ",".join(["[" + _quote(k) + "," + _quote(v) + "]" for k, v in headers])
    return (
        f'{{"status":{status:d},"content_type":{_quote(content_type)},'
        f'"duration_seconds":{float_text(duration)},"headers":[{pairs}],'
        f'"body":"{base64.b64encode(body).decode("ascii")}"}}'
    )


def json_text(value: str | None) -> str:
    """A string (or None) as JSON text."""
    return "null" if value is None else str(_quote(value))


def function_texts(function: str, queue: str) -> tuple[str, str, str]:
    """A function's name, namespace and queue as JSON text (a process meets few of them, and
    every entry it writes holds all three)."""
    if len(function) + len(queue) <= CACHED_TEXT_CHARS:
        return _function_texts_kept(function, queue)
    return _function_texts(function, queue)


def _function_texts(function: str, queue: str) -> tuple[str, str, str]:
    return json_text(function), json_text(split_function(function)[1]), json_text(queue)


_function_texts_kept = functools.lru_cache(maxsize=256)(_function_texts)


def _int_text(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def float_text(value: float) -> str:
    """A finite float as JSON text (`repr`, as `json.dumps` writes it)."""
    if math.isfinite(value):
        return repr(float(value))
    raise ValueError(f"cannot write {value} in a call entry")


def split_function(function: str) -> tuple[str, str]:
    """`name.namespace` -> (`name`, `namespace`), as OpenFaaS writes a namespaced function."""
    name, _, namespace = function.partition(".")
    return name, namespace

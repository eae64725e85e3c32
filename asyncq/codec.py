"""The OpenFaaS `QueueRequest` message: decode every variant, write the Go-compatible form.

Readers accept keys in any letter case (as Go's encoding/json does), missing optional keys,
`Body` null, and `CallbackUrl` as a string or as Go's `url.URL` object. Writers emit the
canonical spelling and `CallbackUrl` as the Go object (`asyncq.gourl`), so Go workers can read
ferry's messages. Reading a Go-written object's fields is `asyncq.json_fields`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from asyncq.gourl import callback_from_go, go_url
from asyncq.json_fields import fold_keys, text_field
from connectors.core.errors import DecodeError
from connectors.core.http1 import is_token
from connectors.core.targets import function_name_problem, path_problem, shorten

_KEYS = (
    "Header",
    "Host",
    "Body",
    "Method",
    "Path",
    "QueryString",
    "Function",
    "QueueName",
    "Annotations",
    "Labels",
    "Environment",
    "CallbackUrl",
)
_CANONICAL = frozenset(_KEYS)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MAY_HOLD_SURROGATES = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class InvalidFunctionName(DecodeError):
    """The message names a function OpenFaaS would not accept; `function` is that name, so the
    dead letter can keep it (in a header, its subject a bounded hash)."""

    def __init__(self, reason: str, function: str) -> None:
        super().__init__(reason)
        self.function = function


@dataclass
class QueueRequest:
    """One queued call. Treat it as read-only (it is not frozen only because a frozen
    dataclass costs twice as much to build, and one is built for every message).

    `start_time` and `callback` are plain properties: in the canonical spelling each is one
    dict lookup, cheaper than functools.cached_property, which takes a lock. `call_id`, read
    about eight times for every message the worker handles (the ledger, the callback, the log),
    is looked up once and kept."""

    function: str
    method: str = "POST"
    body: bytes = b""
    header: dict[str, list[str]] = field(default_factory=dict)
    host: str = ""
    path: str = ""
    query_string: str = ""
    queue_name: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    callback_url: str = ""
    _call_id: str | None = field(default=None, init=False, repr=False, compare=False)

    def first_header(self, name: str) -> str:
        values = self.header.get(name)  # the canonical spelling Go writes: one lookup
        if values:
            return values[0]
        wanted = name.lower()
        for key, values in self.header.items():
            if key.lower() == wanted and values:
                return values[0]
        return ""

    @property
    def call_id(self) -> str:
        found = self._call_id
        if found is None:
            found = self._call_id = self.first_header("X-Call-Id")
        return found

    @property
    def start_time(self) -> str:
        return self.first_header("X-Start-Time")

    @property
    def callback(self) -> str:
        """Where the result goes: the CallbackUrl field, else the X-Callback-Url header."""
        return self.callback_url or self.first_header("X-Callback-Url")

    def header_pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple((k, v) for k, values in self.header.items() for v in values)


def decode(data: bytes) -> QueueRequest:
    """Parse a queued message; raise DecodeError with the reason if it is not a QueueRequest."""
    raw = _object(data)
    if _MAY_HOLD_SURROGATES.search(data):
        _refuse_lone_surrogates(raw)
    fields = fold_keys(raw, _KEYS, _CANONICAL)
    function = _function(fields)
    path = text_field(fields, "Path")
    if (problem := path_problem(path)) is not None:
        raise DecodeError(problem)
    return QueueRequest(
        function=function,
        method=_method(fields),
        body=_body(fields.get("Body")),
        header=_header(fields.get("Header")),
        host=text_field(fields, "Host"),
        path=path,
        query_string=text_field(fields, "QueryString"),
        queue_name=text_field(fields, "QueueName"),
        annotations=_string_map(fields, "Annotations"),
        labels=_string_map(fields, "Labels"),
        environment=_string_map(fields, "Environment"),
        callback_url=_callback(fields.get("CallbackUrl")),
    )


def encode(request: QueueRequest) -> bytes:
    """The JSON Go's encoding/json would write for the same QueueRequest.

    The front door encodes one for every call, so the JSON encoder is made once, and the body's
    base64 (most of the message, and never in need of escaping) is put in place as bytes rather
    than scanned and copied by the encoder."""
    head: dict[str, Any] = {}
    if request.header:
        head["Header"] = request.header
    if request.host:
        head["Host"] = request.host
    rest: dict[str, Any] = {"Method": request.method}
    if request.path:
        rest["Path"] = request.path
    if request.query_string:
        rest["QueryString"] = request.query_string
    rest["Function"] = request.function
    if request.queue_name:
        rest["QueueName"] = request.queue_name
    if request.annotations:
        rest["Annotations"] = request.annotations
    if request.labels:
        rest["Labels"] = request.labels
    if request.environment:
        rest["Environment"] = request.environment
    if request.callback_url:
        rest["CallbackUrl"] = go_url(request.callback_url)
    tail = _json(rest)  # never empty: it holds Method
    if not request.body:
        if not head:
            return tail.encode()
        return (_json(head)[:-1] + "," + tail[1:]).encode()
    opening = _json(head)[:-1] + ',"Body":"' if head else '{"Body":"'
    return b"".join((opening.encode(), base64.b64encode(request.body), b'",', tail[1:].encode()))


def _refuse_to_encode(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} cannot be in a QueueRequest")


# json.dumps(value, separators=(",", ":"), ensure_ascii=False), made once rather than per call;
# no check for circular values (a QueueRequest holds none), so a fault is a RecursionError
_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_ENCODER = (
    None
    if _MAKE_ENCODER is None
    else _MAKE_ENCODER(
        None, _refuse_to_encode, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
)


def _json(value: dict[str, Any]) -> str:
    if _ENCODER is None:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "".join(_ENCODER(value, 0))


def function_of(data: bytes) -> str:
    """Only the function a queued message names (what fair mode's sorter routes by): the rest
    is read, and refused if it must be, by the worker that runs the call. Raises DecodeError
    (InvalidFunctionName for a name OpenFaaS would not accept) as `decode` does."""
    return _function(fold_keys(_object(data), _KEYS, _CANONICAL))


def _object(data: bytes) -> dict[str, Any]:
    """The message as a JSON object; DecodeError if it is not one."""
    try:
        # "{" then a byte that is not NUL: UTF-8, as json.loads would find out first (UTF-16
        # and UTF-32 put NULs beside an ASCII character, and json.loads reads them still)
        utf8 = data[:1] == b"{" and data[1:2] != b"\x00"
        raw = json.loads(data.decode("utf-8", "surrogatepass") if utf8 else data)
    except RecursionError:
        raise DecodeError("not JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer too long
        raise DecodeError(f"not JSON: {shorten(str(exc))}") from None
    if not isinstance(raw, dict):
        raise DecodeError(f"expected a JSON object, got {type(raw).__name__}")
    return raw


def _function(fields: dict[str, Any]) -> str:
    function = fields.get("Function")
    if not isinstance(function, str) or not function:
        raise DecodeError("Function is missing or empty")
    if (problem := function_name_problem(function)) is not None:
        raise InvalidFunctionName(problem, function)
    return function


def _refuse_lone_surrogates(raw: dict[str, Any]) -> None:
    """JSON may spell half a UTF-16 pair (`"\\ud800"`), which no text encoding can write: such
    a message could never become a request. (Checked only when the bytes hold such an escape.)"""
    try:
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError("a string holds half a UTF-16 surrogate pair") from None
    except RecursionError:
        raise DecodeError("nested too deeply") from None


def _method(fields: dict[str, Any]) -> str:
    method = text_field(fields, "Method") or "POST"
    if not is_token(method):
        raise DecodeError(f"Method {method[:40]!r} is not a valid HTTP method")
    return method


def _body(value: Any) -> bytes:
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        raise DecodeError(f"Body must be base64 text or null, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"Body is not valid base64: {exc}") from None


def _header(value: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError("Header must be an object of string lists")
    out: dict[str, list[str]] = {}
    for key, values in value.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list):
            raise DecodeError(f"Header {key!r} must be a list of strings")
        for item in values:
            if not isinstance(item, str):
                raise DecodeError(f"Header {key!r} must be a list of strings")
            if not (item.isascii() and item.isprintable()) and _CONTROL.search(item):
                # no HTTP server takes them (RFC 9110 field values)
                raise DecodeError(
                    f"Header {key!r} holds a control character (CR, LF or NUL, or another but tab)"
                )
        if not is_token(key):
            raise DecodeError(f"Header name {key!r} is not a valid HTTP header name")
        out[key] = values
    return out


def _string_map(fields: dict[str, Any], key: str) -> dict[str, str]:
    value = fields.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise DecodeError(f"{key} must be an object of strings")
    return {str(k): v for k, v in value.items()}


def _callback(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return callback_from_go(value)
    raise DecodeError(f"CallbackUrl must be a URL string or object, got {type(value).__name__}")

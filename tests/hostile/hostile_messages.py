"""Generated queue messages of many hostile kinds, each marked so its fate can be traced.

`generate(count, seed)` returns `Generated` messages: the bytes to publish and whether the
call should reach the echo function (`invoked`) or end as a dead letter. Every message is
unique (a marker in its body, or its index in its bytes), so the fuzz run can account for each
one. To add a kind, add a function to `KINDS`.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Generated:
    kind: str
    data: bytes
    marker: bytes  # the body the echo function sees, if the call reaches it
    invoked: bool  # True: reaches echo and succeeds; False: ends as a dead letter


def _call(marker: bytes, **fields: Any) -> dict[str, Any]:
    return {
        "Function": "echo",
        "Method": "POST",
        "Body": base64.b64encode(marker).decode(),
        **fields,
    }


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# Each kind: (rng, marker) -> (bytes, invoked)
Kind = Callable[[random.Random, bytes], tuple[bytes, bool]]


def _valid(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    return _json(_call(marker, Path=rng.choice(["", "/a", "/a/b.c"]), QueryString="x=1")), True


def _any_case_keys(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    call = _call(marker)
    return _json({rng.choice([k.lower(), k.upper(), k]): v for k, v in call.items()}), True


def _disguised_callback(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    url = rng.choice(["http://127.1:9/", "http://2130706433:9/", "http://localhost:9/"])
    return _json(_call(marker, CallbackUrl=url)), True


def _odd_annotations(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    value = rng.choice(["inf", "nan", "1e400", "-5", "x", "99999999999999999999"])
    return _json(_call(marker, Annotations={"com.openfaas.retry.min_wait": value})), True


def _big_header(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    header = {"X-Big": ["v" * rng.randint(1, 4000)], "X-Uni": ["café ☕\tdone"]}
    return _json(_call(marker, Header=header)), True


def _unknown_function(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    return _json(_call(marker, Function=rng.choice(["missing", "nobody.team"]))), False


def _refused_by_function(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    return _json(_call(marker, Function="broken")), False


def _retried_then_dead(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    return _json(_call(marker, Function="flaky")), False


def _bad_function_name(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    name = rng.choice(
        ["f" * 4096, "Echo", "echo\r\nforged", "a b", "café", "*", ">", "echo..x", "-x", "e" * 64]
    )
    return _json(_call(marker, Function=name)), False


def _dot_segments(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    path = rng.choice(["/../system/functions", "/%2e%2e/x", "/a/%2E/b", "/a%2fb", "/./x"])
    return _json(_call(marker, Path=path)), False


def _wrong_types(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    field, value = rng.choice(
        [
            ("Header", ["not", "a", "map"]),
            ("Header", {"X-A": [1]}),
            ("Header", {"X-A": ["a\r\nInjected: yes"]}),
            ("Header", {"X-A": ["\x1b[2K"]}),
            ("Header", {"bad name": ["x"]}),
            ("Body", "***not base64***"),
            ("Body", 12),
            ("Method", "GET /x"),
            ("Path", 7),
            ("Annotations", {"a": 1}),
            ("CallbackUrl", 3.5),
            ("CallbackUrl", {"Host": 5}),
        ]
    )
    return _json(_call(marker, **{field: value})), False


def _surrogate(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    field = rng.choice(["Host", "Path", "QueryString", "Function"])
    return _json(_call(marker, **{field: "x\ud800"})), False  # written as the escape \\ud800


def _not_json(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    junk = rng.choice(
        [b"{not json", b"\xff\xfe", b"", b"[" * 100_000, b'{"a":' + b"1" * 5000 + b"}"]
    )
    return junk + b" " + marker, False


def _not_an_object(rng: random.Random, marker: bytes) -> tuple[bytes, bool]:
    text = marker.decode()
    return _json(rng.choice([[1, text], f"text {text}", [[text]]])), False


KINDS: dict[str, Kind] = {
    "valid": _valid,
    "any-case keys": _any_case_keys,
    "disguised callback": _disguised_callback,
    "odd annotations": _odd_annotations,
    "big header": _big_header,
    "unknown function": _unknown_function,
    "refused by function": _refused_by_function,
    "retried then dead": _retried_then_dead,
    "bad function name": _bad_function_name,
    "dot segments": _dot_segments,
    "wrong types": _wrong_types,
    "lone surrogate": _surrogate,
    "not JSON": _not_json,
    "not an object": _not_an_object,
}


def generate(count: int, seed: int) -> list[Generated]:
    rng = random.Random(seed)
    kinds = list(KINDS)
    out: list[Generated] = []
    for index in range(count):
        kind = rng.choice(kinds)
        marker = f"fuzz-{index}".encode()
        data, invoked = KINDS[kind](rng, marker)
        out.append(Generated(kind, data, marker, invoked))
    return out

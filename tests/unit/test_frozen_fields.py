"""`fields_at_once`: a frozen dataclass's fields set with one write, with the parameters,
defaults and default factories of the dataclass's own `__init__`, and nothing else changed."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest

from connectors.core.frozen import fields_at_once
from connectors.core.http1 import Response
from connectors.core.invoker import InvocationResult


@dataclass(frozen=True)
class Plain:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)


@fields_at_once
@dataclass(frozen=True)
class Fast:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)


def test_it_takes_what_the_dataclass_takes_and_makes_equal_objects() -> None:
    assert [p.name for p in inspect.signature(Fast).parameters.values()] == ["a", "b", "c"]
    cases: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1,), {}),
        ((1, "x"), {}),
        ((1,), {"c": [2]}),
        ((), {"a": 3, "b": "y"}),
    ]
    for args, kwargs in cases:
        fast, plain = Fast(*args, **kwargs), Plain(*args, **kwargs)
        assert dataclasses.asdict(fast) == dataclasses.asdict(plain)
    assert Fast(1) == Fast(1) and Fast(1) != Fast(2)
    assert repr(Fast(1, "x")) == "Fast(a=1, b='x', c=[])"
    with pytest.raises(TypeError):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast(1, d=2)  # type: ignore[call-arg]


def test_a_default_factory_makes_a_new_value_for_each_object() -> None:
    first, second = Fast(1), Fast(1)
    assert first.c == [] and first.c is not second.c
    given = [5]
    assert Fast(1, c=given).c is given


def test_objects_stay_frozen() -> None:
    made = Fast(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.a = 2  # type: ignore[misc]


def test_the_hot_classes_use_it_and_keep_their_defaults() -> None:
    result = InvocationResult("fn", 200, 1, 0.5)
    assert (result.body, result.error, result.final, result.timed_out) == (b"", "", False, False)
    assert (
        len(result.headers) == 0 and result.headers is not InvocationResult("fn", 200, 1, 0).headers
    )
    assert Response(200, "OK", result.headers, b"x").body == b"x"
    assert InvocationResult.__init__.__qualname__ == "InvocationResult.__init__"


def test_what_it_cannot_set_at_once_is_refused() -> None:
    @dataclass
    class Mutable:
        a: int

    @dataclass(frozen=True, slots=True)
    class Slotted:
        a: int

    @dataclass(frozen=True)
    class KeywordOnly:
        a: int = field(kw_only=True)

    @dataclass(frozen=True)
    class Derived:
        a: int
        b: int = field(init=False, default=0)

    for cls in (Mutable, Slotted, KeywordOnly, Derived, int):
        with pytest.raises(TypeError):
            fields_at_once(cls)

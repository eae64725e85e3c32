"""Frozen dataclasses made for every message: their fields set with one write.

A frozen dataclass's own `__init__` sets each field through `object.__setattr__`, about twice
the cost of writing the instance's `__dict__` once; an event, a result, a response and a
delivery are made for every call. `fields_at_once` gives such a class an `__init__` with the
dataclass's own parameters, defaults and default factories that makes the `__dict__` whole.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C", bound=type)

_MISSING: Any = object()  # stands for an argument not given, where a default factory applies


def fields_at_once(cls: C) -> C:
    """Decorate a frozen dataclass (not slotted, every field in `__init__`, none keyword-only)
    after `@dataclass`: its `__init__` then writes all fields at once."""
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    params = dataclasses.fields(cls)
    if "__slots__" in cls.__dict__ or any(not f.init or f.kw_only for f in params):
        raise TypeError(f"{cls.__name__}: only plain positional fields can be set at once")
    scope: dict[str, Any] = {"_write": object.__setattr__, "_MISSING": _MISSING}
    arguments, values = [], []
    for f in params:
        value = f.name
        if f.default is not dataclasses.MISSING:
            scope[f"_default_{f.name}"] = f.default
            arguments.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
            arguments.append(f"{f.name}=_MISSING")
            value = f"_factory_{f.name}() if {f.name} is _MISSING else {f.name}"
        else:
            arguments.append(f.name)
        values.append(f"{f.name!r}: {value}")
    # generated, as dataclasses generates its own __init__: the names are the fields' own
    source = (
        f"def __init__(self, {', '.join(arguments)}):\n"
        f"    _write(self, '__dict__', {{{', '.join(values)}}})\n"
    )
    exec(source, scope)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = f"{cls.__name__}'s fields, set with one write."
    cls.__init__ = init  # type: ignore[method-assign]
    return cls

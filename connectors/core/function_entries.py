"""The gateway's `/system/functions` entries read defensively: one bad entry never costs the rest.

The gateway is another program, and its answer is input like any other: an entry whose name,
namespace, annotations or labels do not have the shape OpenFaaS documents (strings, and
objects of strings) is skipped with the reason, so a single malformed function cannot stop a
topic map from being built for everyone else.

A name or namespace must also be what the front door takes (`connectors.core.targets`: a
DNS-1123 label each): anything else could not be called as `/function/name.namespace` without
quoting that changes where it goes (`../system/x`), or cannot be put in a URL at all (a lone
surrogate), so it is skipped the same way instead of reaching the gateway or failing a call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.core.targets import LABEL_MAX, is_label

SHOWN_NAME_CHARS = 80  # a skipped entry is named in a log line: bound what it can add to it


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    name: str
    namespace: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    # `name.namespace` when the namespace is known: what the gateway routes by (worked out
    # once: it is read several times for every call)
    qualified: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        qualified = f"{self.name}.{self.namespace}" if self.namespace else self.name
        object.__setattr__(self, "qualified", qualified)


class MalformedEntry(ValueError):
    """A function entry that does not have the documented shape; the message says which one
    and why, in one bounded line."""


def describe_entry(item: object, namespace: str) -> str:
    """How a log line names an entry: its name (and namespace) when it has them, bounded."""
    if isinstance(item, Mapping):
        name = item.get("name")  # repr escapes what a log line must not hold as it is
        shown = name if isinstance(name, str) and name.isprintable() else repr(name)
    else:
        shown = f"a {type(item).__name__} entry"
    if len(shown) > SHOWN_NAME_CHARS:
        shown = shown[:SHOWN_NAME_CHARS] + "..."
    return f"{shown!s} (namespace {namespace!r})" if namespace else shown


NOT_A_LABEL = f"is not a DNS-1123 label (a-z, 0-9, '-', at most {LABEL_MAX} characters)"


def shown_text(text: str) -> str:
    """`text` for a log line: quoted and escaped (repr), cut to a bounded length."""
    if len(text) > SHOWN_NAME_CHARS:
        return repr(text[:SHOWN_NAME_CHARS]) + "..."
    return repr(text)


def _strings(item: Mapping[str, Any], key: str) -> dict[str, str]:
    value = item.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedEntry(f"{key} is a {type(value).__name__}, not an object")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise MalformedEntry(f"{key} holds a value that is not a string")
    return dict(value)


def parse_function(item: object, namespace: str) -> FunctionInfo:
    """One entry as a `FunctionInfo`; `MalformedEntry` when it cannot be one."""
    if not isinstance(item, Mapping):
        raise MalformedEntry(f"the entry is a {type(item).__name__}, not an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedEntry("the entry has no name")
    listed = item.get("namespace")
    if listed is not None and not isinstance(listed, str):
        raise MalformedEntry(f"its namespace is a {type(listed).__name__}, not a string")
    if not is_label(name):
        raise MalformedEntry(f"its name {NOT_A_LABEL}")
    if listed and not is_label(listed):
        raise MalformedEntry(f"its namespace {shown_text(listed)} {NOT_A_LABEL}")
    return FunctionInfo(
        name=name,
        namespace=listed or namespace,
        annotations=_strings(item, "annotations"),
        labels=_strings(item, "labels"),
    )


@dataclass(frozen=True)
class FunctionEntries:
    """What one namespace's answer held: the usable functions and why the rest were skipped."""

    functions: tuple[FunctionInfo, ...]
    skipped: tuple[str, ...]  # one line per skipped entry: who and why


def parse_entries(items: object, namespace: str) -> FunctionEntries:
    """Every usable entry of one `/system/functions` answer (a JSON list already decoded).

    The list is emptied as it is read: freed one entry at a time, 100,000 decoded entries
    never make one long deallocation that holds the GIL (and so the event loop)."""
    if not isinstance(items, list):
        raise MalformedEntry("/system/functions did not return a list")
    functions: list[FunctionInfo] = []
    skipped: list[str] = []
    for index, item in enumerate(items):
        items[index] = None
        try:
            functions.append(parse_function(item, namespace))
        except MalformedEntry as exc:
            skipped.append(f"{describe_entry(item, namespace)}: {exc}")
    return FunctionEntries(tuple(functions), tuple(skipped))

"""What standalone mode reports about each function beyond the functions file: how often it was
invoked through this gateway, and since when the gateway has listed it.

OpenFaaS's `/system/functions` shows an `invocationCount` (the gateway's Prometheus count of
calls it proxied) and a `createdAt`; faas-cli prints both (`list`, `describe`). ferry counts the
`/function/{name}` calls this process forwards (the queue worker's invocations too, when its
`gateway_url` is this gateway, as in `ferry dev`), per process and from start-up, like an
OpenFaaS gateway without a Prometheus history. Both maps hold only the functions in the current
list, so they are as bounded as the functions file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.functions import Function, FunctionList

_Key = tuple[str, str]


class FunctionStatus:
    def __init__(self) -> None:
        self._invocations: dict[_Key, int] = {}
        self._listed_since: dict[_Key, datetime] = {}

    def observe(self, functions: FunctionList) -> None:
        """A new function list: start new functions at 0, forget the ones no longer listed."""
        now = datetime.now(UTC)
        current = {_key(fn) for fn in functions.functions}
        self._listed_since = {k: self._listed_since.get(k, now) for k in current}
        self._invocations = {k: self._invocations.get(k, 0) for k in current}

    def invoked(self, function: Function) -> None:
        key = _key(function)
        if key in self._invocations:  # a function listed a moment ago is counted after observe
            self._invocations[key] += 1

    def openfaas_json(self, function: Function) -> dict[str, Any]:
        """The function as OpenFaaS's `/system/functions` lists it, with its status fields."""
        shown = function.openfaas_json()
        key = _key(function)
        shown["invocationCount"] = self._invocations.get(key, 0)
        since = self._listed_since.get(key)
        if since is not None:
            shown["createdAt"] = since.isoformat().replace("+00:00", "Z")
        return shown


def _key(function: Function) -> _Key:
    return (function.name, function.namespace)

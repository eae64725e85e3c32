"""The functions the front door knows, as one immutable list swapped whole on refresh.

Two sources fill it: a YAML functions file (standalone mode, re-read when it changes) or an
upstream gateway's `/system/functions` (proxy mode). A failed refresh keeps the last good list,
so a broken edit or an upstream blip never turns every async call into a 404.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import yaml

from connectors.core.errors import ConfigError, FerryError
from connectors.core.gateway import GatewayClient
from connectors.core.targets import is_function_name
from connectors.core.topicmap import GatewayQueryError, TopicMapRefresher

log = logging.getLogger("ferry.gateway")

DEFAULT_NAMESPACE = "openfaas-fn"


@dataclass(frozen=True)
class Function:
    name: str
    namespace: str = DEFAULT_NAMESPACE
    url: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str = ""  # shown to OpenFaaS clients only; standalone functions are URLs

    def openfaas_json(self) -> dict[str, Any]:
        """The function as OpenFaaS's `/system/functions` lists it."""
        return {
            "name": self.name,
            "image": self.image,
            "namespace": self.namespace,
            "envProcess": "",
            "replicas": 1,
            "availableReplicas": 1,
            "invocationCount": 0,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }


@dataclass(frozen=True)
class FunctionList:
    functions: tuple[Function, ...] = ()
    _index: dict[str, Function] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for fn in reversed(self.functions):
            self._index[f"{fn.name}.{fn.namespace}"] = fn
            if fn.namespace in ("", DEFAULT_NAMESPACE):
                self._index[fn.name] = fn

    def find(self, qualified: str) -> Function | None:
        """`name` (default namespace) or `name.namespace`, as the gateway routes them."""
        return self._index.get(qualified)

    def namespaces(self) -> list[str]:
        return sorted({fn.namespace for fn in self.functions} or {DEFAULT_NAMESPACE})

    def in_namespace(self, namespace: str) -> list[Function]:
        return [fn for fn in self.functions if fn.namespace == namespace]


class FunctionSource(Protocol):
    async def load(self) -> FunctionList | None:
        """A fresh list, None if nothing changed; raises FerryError if it cannot be read."""


class FunctionsFile:
    """A YAML functions file; `load` re-parses it only when its size or mtime changed."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int] | None = None

    async def load(self) -> FunctionList | None:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"functions_file={self.path}: {exc.strerror or exc}") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._seen:
            return None
        functions = parse_functions_file(self.path)
        self._seen = stamp
        return functions


def parse_functions_file(path: Path) -> FunctionList:
    """Read and validate the functions file; ConfigError names the file and the problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"functions_file={path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"functions_file={path}: not valid YAML: {_one_line(exc)}") from None
    items = raw.get("functions") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"functions_file={path}: expected a top-level 'functions:' list")
    try:
        functions = tuple(_function(item, i) for i, item in enumerate(items))
        _refuse_duplicates(functions)
    except ValueError as exc:
        raise ConfigError(f"functions_file={path}: {exc}") from None
    return FunctionList(functions)


def _refuse_duplicates(functions: Iterable[Function]) -> None:
    """Two entries with one name would make which one serves a call depend on their order."""
    seen: set[tuple[str, str]] = set()
    for fn in functions:
        if (fn.name, fn.namespace) in seen:
            raise ValueError(f"function {fn.name}.{fn.namespace} is listed twice")
        seen.add((fn.name, fn.namespace))


def _function(item: Any, index: int) -> Function:
    if not isinstance(item, dict):
        raise ValueError(f"functions[{index}] must be a mapping")
    name = item.get("name")
    if not isinstance(name, str) or not is_function_name(name) or "." in name:
        raise ValueError(
            f"functions[{index}].name must be a DNS-1123 label (a-z, 0-9 and '-', at most 63), "
            "as OpenFaaS names functions"
        )
    namespace = str(item.get("namespace") or DEFAULT_NAMESPACE)
    if not is_function_name(namespace) or "." in namespace:
        raise ValueError(f"function {name}: namespace must be a DNS-1123 label")
    url = item.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"function {name}: url must be an http:// or https:// URL")
    image = item.get("image", "")
    if not isinstance(image, str):
        raise ValueError(f"function {name}: image must be a string")
    return Function(
        name=name,
        namespace=namespace,
        url=str(url).rstrip("/"),
        image=image,
        annotations=_strings(item.get("annotations"), f"function {name}: annotations"),
        labels=_strings(item.get("labels"), f"function {name}: labels"),
    )


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a mapping of strings")
    return {str(k): str(v) for k, v in value.items()}


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


class UpstreamFunctions:
    """The upstream gateway's functions, read the way connectors read them."""

    def __init__(self, client: GatewayClient) -> None:
        self.lister = TopicMapRefresher(client, interval=0)

    async def load(self) -> FunctionList | None:
        try:
            found = await self.lister.list_functions()
        except GatewayQueryError as exc:
            raise FerryError(str(exc)) from None
        return FunctionList(
            tuple(
                Function(fn.name, fn.namespace, "", dict(fn.annotations), dict(fn.labels))
                for fn in found
            )
        )


class FunctionCatalog:
    """The current FunctionList, refreshed in the background and on a miss (rate-limited)."""

    def __init__(
        self,
        source: FunctionSource,
        *,
        interval: float,
        min_gap: float = 1.0,
        on_update: Callable[[FunctionList], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self._on_update = on_update
        self._on_failure = on_failure
        self.interval = interval
        self.min_gap = min_gap
        self.current = FunctionList()
        self.loaded = False
        self.failures = 0
        self._last_attempt = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> bool:
        """Reload once; on failure keep the last good list. Returns whether it succeeded."""
        async with self._lock:
            self._last_attempt = time.monotonic()
            try:
                fresh = await self.source.load()
            except FerryError as exc:
                self.failures += 1
                log.warning("function list refresh failed, keeping the last good list: %s", exc)
                if self._on_failure is not None:
                    self._on_failure()
                return False
            if fresh is not None:
                if not self.loaded or fresh != self.current:
                    log.info("function list: %s", _names(fresh.functions) or "(empty)")
                self.current = fresh
                if self._on_update is not None:
                    self._on_update(fresh)
            self.loaded = True
            return True

    async def prime(self) -> None:
        """The first load, which must succeed (a bad functions file stops start-up)."""
        async with self._lock:
            self._last_attempt = time.monotonic()
            fresh = await self.source.load()
            self.current = fresh or FunctionList()
            self.loaded = True
            if self._on_update is not None:
                self._on_update(self.current)
            log.info("function list: %s", _names(self.current.functions) or "(empty)")

    async def lookup(self, qualified: str) -> Function | None:
        """Find a function; on a miss, re-read the list once if it was not read just now."""
        found = self.current.find(qualified)
        if found is None and time.monotonic() - self._last_attempt >= self.min_gap:
            await self.refresh()
            found = self.current.find(qualified)
        return found

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.refresh()


def _names(functions: Iterable[Function]) -> str:
    return ", ".join(f"{fn.name}.{fn.namespace}" for fn in functions)

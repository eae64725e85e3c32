"""Which functions subscribe to which topic, read from the gateway and swapped whole.

A function subscribes with the annotation `topic` (several topics separated by
`topic_delimiter`). `TopicMap` is an immutable value; `TopicMapRefresher` rebuilds it every
`rebuild_interval` and swaps the reference in one step, so a lookup never sees half a map. A
failed rebuild keeps the last good map (logged and counted) and never stops the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from connectors.core.errors import FerryError
from connectors.core.gateway import GatewayClient

log = logging.getLogger(__name__)

TOPIC_ANNOTATION = "topic"


class GatewayQueryError(FerryError):
    """The gateway's function list could not be read."""


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    namespace: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        """`name.namespace` when the namespace is known: what the gateway routes by."""
        return f"{self.name}.{self.namespace}" if self.namespace else self.name


@dataclass(frozen=True)
class TopicMap:
    by_topic: Mapping[str, tuple[FunctionInfo, ...]] = field(default_factory=dict)
    functions: tuple[FunctionInfo, ...] = ()

    @classmethod
    def build(cls, functions: Iterable[FunctionInfo], delimiter: str = ",") -> TopicMap:
        by_topic: dict[str, list[FunctionInfo]] = {}
        listed = tuple(functions)
        for fn in listed:
            raw = fn.annotations.get(TOPIC_ANNOTATION, "")
            for topic in (t.strip() for t in raw.split(delimiter or ",")):
                if topic and fn not in by_topic.setdefault(topic, []):
                    by_topic[topic].append(fn)
        return cls({t: tuple(fns) for t, fns in by_topic.items()}, listed)

    def match(self, topic: str) -> tuple[FunctionInfo, ...]:
        return self.by_topic.get(topic, ())

    @property
    def size(self) -> int:
        """Topic-to-function subscriptions in the map."""
        return sum(len(fns) for fns in self.by_topic.values())


def parse_function(item: Mapping[str, Any], namespace: str) -> FunctionInfo | None:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        return None
    annotations = item.get("annotations") or {}
    labels = item.get("labels") or {}
    return FunctionInfo(
        name=name,
        namespace=str(item.get("namespace") or namespace or ""),
        annotations={str(k): str(v) for k, v in dict(annotations).items()},
        labels={str(k): str(v) for k, v in dict(labels).items()},
    )


class TopicMapRefresher:
    """Keeps `current` up to date from `/system/namespaces` and `/system/functions`."""

    def __init__(
        self,
        client: GatewayClient,
        *,
        interval: float,
        delimiter: str = ",",
        namespace: str = "",
        on_rebuild: Callable[[TopicMap], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.interval = interval
        self.delimiter = delimiter
        self.namespace = namespace
        self.current = TopicMap()
        self.rebuilt_once = False
        self._on_rebuild = on_rebuild
        self._on_failure = on_failure

    async def refresh(self) -> bool:
        """Rebuild once; on failure keep the last good map. Returns whether it succeeded."""
        try:
            functions = await self.list_functions()
        except GatewayQueryError as exc:
            log.warning("topic map rebuild failed, keeping the last good map: %s", exc)
            if self._on_failure is not None:
                self._on_failure(str(exc))
            return False
        new_map = TopicMap.build(functions, self.delimiter)
        if not self.rebuilt_once or new_map.by_topic != self.current.by_topic:
            log.info("topic map: %d topics, %d subscriptions", len(new_map.by_topic), new_map.size)
        self.current = new_map
        self.rebuilt_once = True
        if self._on_rebuild is not None:
            self._on_rebuild(new_map)
        return True

    async def run(self, first_retry: float = 1.0) -> None:
        """Rebuild forever: every `first_retry` seconds until one rebuild has succeeded (a
        source consumes nothing before that), then every `interval`."""
        while True:
            await asyncio.sleep(self.interval if self.rebuilt_once else first_retry)
            await self.refresh()

    async def list_functions(self) -> list[FunctionInfo]:
        namespaces = [self.namespace] if self.namespace else await self._namespaces()
        functions: list[FunctionInfo] = []
        for ns in namespaces:
            query = f"?namespace={ns}" if ns else ""
            items = await self._get_json(f"/system/functions{query}")
            if not isinstance(items, list):
                raise GatewayQueryError("/system/functions did not return a list")
            for item in items:
                fn = parse_function(item, ns) if isinstance(item, dict) else None
                if fn is not None:
                    functions.append(fn)
        return functions

    async def _namespaces(self) -> list[str]:
        try:
            names = await self._get_json("/system/namespaces")
        except GatewayQueryError as exc:
            if "404" in str(exc):  # a gateway without namespaces (e.g. faasd, older versions)
                return [""]
            raise
        if not isinstance(names, list) or not names:
            return [""]
        return [str(n) for n in names]

    async def _get_json(self, path: str) -> Any:
        try:
            async with self.client.system_get(path) as response:
                if response.status != 200:
                    raise GatewayQueryError(f"GET {path} answered {response.status}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise GatewayQueryError(f"GET {path}: {exc.__class__.__name__}: {exc}") from None

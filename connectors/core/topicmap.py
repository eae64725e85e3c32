"""Which functions subscribe to which topic, read from the gateway and swapped whole.

A function subscribes with the annotation `topic` (several topics separated by
`topic_delimiter`). `TopicMap` is an immutable value; `TopicMapRefresher` rebuilds it every
`rebuild_interval` and swaps the reference in one step, so a lookup never sees half a map. A
failed rebuild keeps the last good map (logged and counted) and never stops the process; a
malformed entry is skipped (logged once, counted) and never costs the others their map.

Rebuilds are linear in the number of functions, skipped when the gateway's answer is the same
bytes as last time, and decoded and built in a worker thread, so even 100,000 functions do
not hold up the event loop (Kafka heartbeats, SQS visibility, cron slots) while they are read.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from connectors.core.errors import FerryError
from connectors.core.function_entries import (
    FunctionInfo,
    MalformedEntry,
    describe_entry,
    parse_entries,
    parse_function,
)
from connectors.core.gateway import GatewayClient
from connectors.core.targets import is_label

__all__ = [
    "FunctionInfo",
    "GatewayQueryError",
    "TopicMap",
    "TopicMapRefresher",
    "parse_function",
]

log = logging.getLogger(__name__)

TOPIC_ANNOTATION = "topic"
# /system/functions answers, all namespaces together (100,000 functions are about 30 MiB)
MAX_ANSWER_BYTES = 128 * 1024 * 1024
MAX_NAMESPACES_BYTES = 1024 * 1024
READ_CHUNK = 256 * 1024


class GatewayQueryError(FerryError):
    """The gateway's function list could not be read."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TopicMap:
    by_topic: Mapping[str, tuple[FunctionInfo, ...]] = field(default_factory=dict)
    functions: tuple[FunctionInfo, ...] = ()
    skipped: tuple[str, ...] = ()  # gateway entries left out as malformed: who and why
    merged: int = 0  # entries that repeated a function already listed

    @classmethod
    def build(
        cls,
        functions: Iterable[FunctionInfo],
        delimiter: str = ",",
        skipped: Sequence[str] = (),
    ) -> TopicMap:
        """One function per `name.namespace`, whatever the list repeats: the first entry
        stands for it, and the topics of every entry naming it are subscribed once."""
        first: dict[str, FunctionInfo] = {}
        by_topic: dict[str, dict[str, FunctionInfo]] = {}
        seen = 0
        for fn in functions:
            seen += 1
            kept = first.setdefault(fn.qualified, fn)
            for topic in fn.annotations.get(TOPIC_ANNOTATION, "").split(delimiter or ","):
                topic = topic.strip()
                if topic:
                    by_topic.setdefault(topic, {}).setdefault(fn.qualified, kept)
        return cls(
            {t: tuple(fns.values()) for t, fns in by_topic.items()},
            tuple(first.values()),
            tuple(skipped),
            seen - len(first),
        )

    def match(self, topic: str) -> tuple[FunctionInfo, ...]:
        return self.by_topic.get(topic, ())

    @property
    def size(self) -> int:
        """Topic-to-function subscriptions in the map."""
        return sum(len(fns) for fns in self.by_topic.values())


@dataclass(frozen=True)
class GatewayAnswers:
    """The raw bytes of one reading of the gateway: its namespaces and each one's functions."""

    namespaces: bytes | None  # None when the refresher is pinned to one namespace
    functions: tuple[tuple[str, bytes], ...]

    def digest(self) -> bytes:
        hashed = hashlib.blake2b(digest_size=32)
        for part in (self.namespaces or b"", *(b for _, b in self.functions)):
            hashed.update(len(part).to_bytes(8, "big"))
            hashed.update(part)
        for namespace, _ in self.functions:
            hashed.update(namespace.encode("utf-8", "surrogatepass") + b"\0")
        return hashed.digest()


def decode_json(data: bytes, path: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise GatewayQueryError(f"GET {path}: not JSON: {str(exc)[:200]}") from None


_SPACE = re.compile(r"[ \t\n\r]*")


def _after_space(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    return match.end() if match is not None else at


def decode_list(data: bytes, path: str) -> Any:
    """A JSON answer that should be a list, decoded one item at a time.

    `json.loads` on a 30 MB answer is one C call that holds the GIL for a quarter of a second,
    so the event loop would stall even with the decoding on a worker thread; item by item,
    the thread lets go of the GIL between items. Anything but a list is decoded whole.
    """
    try:
        text = data.decode("utf-8")
        at = _after_space(text, 0)
        if not text.startswith("[", at):
            return json.loads(text)
        decoder = json.JSONDecoder()
        items: list[Any] = []
        at = _after_space(text, at + 1)
        closed = text.startswith("]", at)
        while not closed:
            item, at = decoder.raw_decode(text, at)
            items.append(item)
            at = _after_space(text, at)
            closed = text.startswith("]", at)
            if not closed and not text.startswith(",", at):
                raise ValueError(f"expected ',' or ']' at character {at}")
            at = _after_space(text, at + 1) if not closed else at
        if _after_space(text, at + 1) != len(text):
            raise ValueError(f"extra data at character {at + 1}")
        return items
    except (ValueError, RecursionError) as exc:
        raise GatewayQueryError(f"GET {path}: not JSON: {str(exc)[:200]}") from None


def build_from_answers(
    answers: GatewayAnswers, delimiter: str, namespace_skips: Sequence[str]
) -> TopicMap:
    """Decode every answer and build the map (run in a worker thread: it is the heavy part)."""
    functions: list[FunctionInfo] = []
    skipped = list(namespace_skips)
    for namespace, body in answers.functions:
        try:
            entries = parse_entries(decode_list(body, "/system/functions"), namespace)
        except MalformedEntry as exc:
            raise GatewayQueryError(str(exc)) from None
        functions.extend(entries.functions)
        skipped.extend(entries.skipped)
    return TopicMap.build(functions, delimiter, skipped)


MAX_NAMESPACES = 1000  # namespaces read per refresh, one /system/functions request each


def namespaces_from(names: Any) -> tuple[list[str], list[str]]:
    """(usable namespaces, one line per skipped one) from a `/system/namespaces` answer."""
    if not isinstance(names, list) or not names:
        return [""], []
    usable: list[str] = []
    skipped: list[str] = []
    for name in names[:MAX_NAMESPACES]:
        if isinstance(name, str) and is_label(name):
            usable.append(name)
        else:
            skipped.append(f"namespace {describe_entry({'name': name}, '')}: not a name")
    if len(names) > MAX_NAMESPACES:  # each is a request per refresh: a bad answer must not stall it
        skipped.append(f"{len(names) - MAX_NAMESPACES} namespaces past the first {MAX_NAMESPACES}")
    return usable or [""], skipped


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
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.client = client
        self.max_answer_bytes = max_answer_bytes
        self.interval = interval
        self.delimiter = delimiter
        self.namespace = namespace
        self.current = TopicMap()
        self.rebuilt_once = False
        self.builds = 0  # how many times a map was actually built (not skipped as unchanged)
        self._digest: bytes | None = None
        self._reported: frozenset[str] = frozenset()
        self._merged_reported = 0
        self._on_rebuild = on_rebuild
        self._on_failure = on_failure

    async def refresh(self) -> bool:
        """Rebuild once; on failure keep the last good map. Returns whether it succeeded.

        An answer byte for byte the same as the last one is not decoded again. Anything but
        an unreadable answer (a bug) propagates, so the task running this is seen to die."""
        try:
            answers, namespace_skips = await self._read()
            digest = await asyncio.to_thread(answers.digest)
            if digest != self._digest or not self.rebuilt_once:
                new_map = await asyncio.to_thread(
                    build_from_answers, answers, self.delimiter, namespace_skips
                )
                self._swap(new_map, digest)
        except GatewayQueryError as exc:
            log.warning("topic map rebuild failed, keeping the last good map: %s", exc)
            if self._on_failure is not None:
                self._on_failure(str(exc))
            return False
        self.rebuilt_once = True
        if self._on_rebuild is not None:
            self._on_rebuild(self.current)
        return True

    def _swap(self, new_map: TopicMap, digest: bytes) -> None:
        self.builds += 1
        self._report(new_map)
        log.info("topic map: %d topics, %d subscriptions", len(new_map.by_topic), new_map.size)
        self.current = new_map
        self._digest = digest

    def _report(self, new_map: TopicMap) -> None:
        """One warning per malformed entry while it stays malformed, not one per rebuild."""
        for line in new_map.skipped:
            if line not in self._reported:
                log.warning("gateway function entry skipped: %s", line)
        self._reported = frozenset(new_map.skipped)
        if new_map.merged and new_map.merged != self._merged_reported:
            log.warning(
                "%d function entries repeat a name.namespace listed before; each function "
                "is subscribed once",
                new_map.merged,
            )
        self._merged_reported = new_map.merged

    async def run(self, first_retry: float = 1.0) -> None:
        """Rebuild forever: every `first_retry` seconds until one rebuild has succeeded (a
        source consumes nothing before that), then every `interval`."""
        while True:
            await asyncio.sleep(self.interval if self.rebuilt_once else first_retry)
            await self.refresh()

    async def list_functions(self) -> list[FunctionInfo]:
        """The gateway's functions now, one per `name.namespace` (malformed entries logged
        and left out)."""
        answers, namespace_skips = await self._read()
        found = await asyncio.to_thread(
            build_from_answers, answers, self.delimiter, namespace_skips
        )
        self._report(found)
        return list(found.functions)

    async def _read(self) -> tuple[GatewayAnswers, list[str]]:
        listing: bytes | None = None
        skipped: list[str] = []
        if self.namespace:
            namespaces = [self.namespace]
        else:
            listing, namespaces, skipped = await self._namespaces()
        functions = []
        budget = self.max_answer_bytes
        for ns in namespaces:
            query = f"?namespace={quote(ns, safe='')}" if ns else ""
            bound = f"{self.max_answer_bytes} bytes for all namespaces"
            body = await self._get(f"/system/functions{query}", budget, bound)
            budget -= len(body)
            functions.append((ns, body))
        return GatewayAnswers(listing, tuple(functions)), skipped

    async def _namespaces(self) -> tuple[bytes, list[str], list[str]]:
        try:
            bound = f"{MAX_NAMESPACES_BYTES} bytes"
            body = await self._get("/system/namespaces", MAX_NAMESPACES_BYTES, bound)
        except GatewayQueryError as exc:
            if exc.status == 404:  # a gateway without namespaces (e.g. faasd, older versions)
                return b"", [""], []
            raise
        usable, skipped = namespaces_from(decode_json(body, "/system/namespaces"))
        return body, usable, skipped

    async def _get(self, path: str, limit: int, bound: str) -> bytes:
        """The answer's body, refused (not read on) once it passes `limit` bytes."""
        try:
            async with self.client.system_get(path) as response:
                if response.status != 200:
                    raise GatewayQueryError(
                        f"GET {path} answered {response.status}", response.status
                    )
                if (response.content_length or 0) > limit:
                    raise GatewayQueryError(f"GET {path}: answers over {bound}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(READ_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise GatewayQueryError(f"GET {path}: answers over {bound}")
                    chunks.append(chunk)
                return b"".join(chunks)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayQueryError(f"GET {path}: {exc.__class__.__name__}: {exc}") from None

"""Who fires a slot when several replicas run: the one that claims it first in JetStream.

A claim is a key-value `create` of `slot.{function}.{unix_ms}`, which succeeds for exactly one
replica. Under the `forbid` policy the replica running a sync call also puts `busy.{function}`
(holding when the call must be over at the latest), so the others skip the next slot too.
Without NATS a single replica owns every slot. When the claim store cannot be reached the slot
is skipped (logged and counted): firing anyway could fire it once per replica.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Protocol

from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from connectors.core.errors import FerryError
from connectors.jetstream.connect import NatsConnection, connect
from connectors.jetstream.settings import NatsSettings
from connectors.jetstream.setup import ensure_key_value

log = logging.getLogger("ferry.cron")

_KEY_PLAIN = re.compile(r"[-_a-zA-Z0-9]")
CLAIM_TTL_SECONDS = 24 * 3600.0


class ClaimError(FerryError):
    """The claim store could not answer."""


class SlotClaims(Protocol):
    async def claim(self, function: str, unix_ms: int, owner: str) -> bool:
        """True if this replica fires the slot."""

    async def busy_elsewhere(self, function: str, now_ms: int) -> bool:
        """Whether another replica marked a sync call of `function` as still running."""

    async def mark_busy(self, function: str, until_ms: int) -> None:
        """Tell other replicas a sync call runs here, at the latest until `until_ms`."""

    async def mark_idle(self, function: str) -> None: ...

    async def close(self) -> None: ...


class LocalClaims:
    """A single replica: every slot is ours, once (two schedules may name the same instant)."""

    def __init__(self, remember: int = 10_000) -> None:
        self.remember = remember
        self._claimed: OrderedDict[str, None] = OrderedDict()

    async def claim(self, function: str, unix_ms: int, owner: str) -> bool:
        key = claim_key(function, unix_ms)
        if key in self._claimed:
            return False
        self._claimed[key] = None
        while len(self._claimed) > self.remember:
            self._claimed.popitem(last=False)
        return True

    async def busy_elsewhere(self, function: str, now_ms: int) -> bool:
        return False

    async def mark_busy(self, function: str, until_ms: int) -> None:
        return None

    async def mark_idle(self, function: str) -> None:
        return None

    async def close(self) -> None:
        return None


def key_token(function: str) -> str:
    """`function` as a key-value key token, one to one: two names never share a key.

    Letters, digits, `-` and `_` stay; a `.` stays unless it would leave an empty token; every
    other character becomes `=XX` per UTF-8 byte. `=` is always escaped, so the escapes cannot
    be confused with the name (`a+b` is `a=2Bb`, `a_b` stays `a_b`).
    """
    out: list[str] = []
    last = len(function) - 1
    for i, char in enumerate(function):
        inner_dot = char == "." and 0 < i < last and function[i - 1] != "."
        if inner_dot or _KEY_PLAIN.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"={byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out) or "="


def claim_key(function: str, unix_ms: int) -> str:
    return f"slot.{key_token(function)}.{unix_ms}"


def busy_key(function: str) -> str:
    return f"busy.{key_token(function)}"


class JetStreamClaims:
    """Claims in a replicated key-value bucket (`nats_stream_replicas`), shared by replicas."""

    def __init__(self, connection: NatsConnection, kv: KeyValue, timeout: float) -> None:
        self.connection = connection
        self.kv = kv
        self.timeout = timeout

    @classmethod
    async def open(cls, settings: NatsSettings, bucket: str) -> JetStreamClaims:
        """Connect and make sure the bucket exists; StartupError or ConfigError if not."""
        connection = await connect(settings, name="ferry-cron-connector")
        timeout = settings.nats_connect_timeout
        try:
            js = connection.client.jetstream(timeout=timeout)
            kv = await ensure_key_value(
                js,
                bucket,
                ttl=CLAIM_TTL_SECONDS,
                history=1,
                replicas=settings.nats_stream_replicas,
            )
        except BaseException:
            await connection.close()
            raise
        return cls(connection, kv, timeout)

    async def claim(self, function: str, unix_ms: int, owner: str) -> bool:
        try:
            await self.kv.create(claim_key(function, unix_ms), owner.encode())
        except KeyWrongLastSequenceError:
            return False
        except (NatsError, TimeoutError) as exc:
            raise ClaimError(
                f"claim of {function} at {unix_ms}: {exc or type(exc).__name__}"
            ) from None
        return True

    async def busy_elsewhere(self, function: str, now_ms: int) -> bool:
        """A busy mark holds its expiry, so a replica that died mid-call blocks nothing for long."""
        try:
            entry = await self.kv.get(busy_key(function))
        except KeyNotFoundError:
            return False
        except (NatsError, TimeoutError) as exc:
            raise ClaimError(f"busy check of {function}: {exc or type(exc).__name__}") from None
        try:
            return int((entry.value or b"0").decode()) > now_ms
        except ValueError:
            return False

    async def mark_busy(self, function: str, until_ms: int) -> None:
        try:
            await self.kv.put(busy_key(function), str(until_ms).encode())
        except (NatsError, TimeoutError) as exc:
            log.warning("could not mark %s busy for other replicas: %s", function, exc)

    async def mark_idle(self, function: str) -> None:
        try:
            await self.kv.delete(busy_key(function))
        except (NatsError, TimeoutError) as exc:
            log.warning("could not clear the busy mark of %s: %s", function, exc)

    async def close(self) -> None:
        await self.connection.close()

"""Who fires a slot when several replicas run: the one that claims it first in JetStream.

A claim is a key-value `create` of `slot.{function}.{unix_ms}`, which succeeds for exactly one
replica. Under the `forbid` policy the replica running a sync call also puts `busy.{function}`
(holding when the call must be over at the latest), so the others skip the next slot too.
Without NATS a single replica owns every slot. When the claim store cannot be reached the slot
is skipped (logged and counted): firing anyway could fire it once per replica.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from typing import Protocol

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from connectors.core.errors import FerryError

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
    def __init__(self, nc: Client, kv: KeyValue, timeout: float) -> None:
        self.nc = nc
        self.kv = kv
        self.timeout = timeout

    @classmethod
    async def connect(cls, url: str, bucket: str, timeout: float) -> JetStreamClaims:
        import nats

        errors: list[str] = []

        async def report(exc: Exception) -> None:
            # before the first connection the error goes into the one start-up line
            if not connected:
                errors.append(str(exc) or type(exc).__name__)
            else:
                log.warning("NATS: %s", exc or type(exc).__name__)

        connected = False

        try:
            # bounded here: nats-py keeps retrying a first connection that reconnects allow
            nc = await asyncio.wait_for(
                nats.connect(
                    url,
                    name="ferry-cron-connector",
                    connect_timeout=max(1, int(timeout)),
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    reconnect_time_wait=1,
                    error_cb=report,
                ),
                timeout * 2 + 1,
            )
        except (NatsError, OSError, TimeoutError) as exc:
            detail = errors[-1] if errors else str(exc) or type(exc).__name__
            raise ClaimError(f"cannot connect to NATS at {url}: {detail}") from None
        connected = True
        try:
            js = nc.jetstream(timeout=timeout)
            kv = await js.create_key_value(bucket=bucket, ttl=CLAIM_TTL_SECONDS, history=1)
        except (NatsError, TimeoutError) as exc:
            await nc.close()
            raise ClaimError(f"cannot use the JetStream bucket {bucket!r}: {exc}") from None
        return cls(nc, kv, timeout)

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
        if not self.nc.is_closed:
            await self.nc.close()

"""Who fires a slot when several replicas run: the one that claims it first in JetStream.

A claim is a key-value `create` of `slot.{function}.{unix_ms}`, which succeeds for exactly one
replica. Under the `forbid` policy the replica running a sync call also holds a lease on
`busy.{function}`: a few seconds long, renewed while the call runs (`leases.py`), so the others
skip the next slot, and a replica that dies mid-call frees the function within seconds. Each
change of a lease names the revision it expects, so two replicas never both take it and a
replica never renews or releases a lease another one took over.
Without NATS a single replica owns every slot. When the claim store cannot be reached the slot
is skipped (logged and counted): firing anyway could fire it once per replica.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from nats.errors import Error as NatsError
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from connectors.core.errors import FerryError
from connectors.jetstream.connect import NatsConnection, connect
from connectors.jetstream.settings import NatsSettings
from connectors.jetstream.setup import ensure_key_value

log = logging.getLogger("ferry.cron")

_KEY_PLAIN = re.compile(r"[-_a-zA-Z0-9]")
CLAIM_TTL_SECONDS = 24 * 3600.0


WRONG_LAST_SEQUENCE = frozenset({10071, 10164})  # JetStream's "not the revision you expected"


class ClaimError(FerryError):
    """The claim store could not answer."""


@dataclass(frozen=True)
class Lease:
    """The answer to taking a function's busy lease: ours (`revision`, to renew or release it
    with), or held by `holder` until `until_ms` (Unix ms, the holder's wall clock)."""

    revision: int = 0
    holder: str = ""
    until_ms: int = 0

    @property
    def taken(self) -> bool:
        return self.revision > 0


OUTCOME_SEPARATOR = " → "


def outcome_value(owner: str, outcome: str) -> bytes:
    """A claim once its call has ended: who fired it and how it ended (`host-1 → 200`)."""
    return f"{owner}{OUTCOME_SEPARATOR}{outcome}".encode()


def lease_value(owner: str, until_ms: int) -> bytes:
    return f"{until_ms} {owner}".encode()


def read_lease(value: bytes | None) -> tuple[int, str]:
    """(until_ms, holder) of a stored lease; a value that cannot be read has expired."""
    until, _, holder = (value or b"").decode("utf-8", "replace").partition(" ")
    try:
        return int(until), holder
    except ValueError:
        return 0, holder


class SlotClaims(Protocol):
    async def claim(self, function: str, unix_ms: int, owner: str) -> bool:
        """True if this replica fires the slot."""

    async def take_lease(self, function: str, owner: str, until_ms: int, now_ms: int) -> Lease:
        """Take the busy lease of `function` unless another replica holds an unexpired one."""

    async def renew_lease(self, function: str, revision: int, value: bytes) -> int:
        """The lease's new revision; 0 if it is no longer ours (taken over or deleted)."""

    async def release_lease(self, function: str, revision: int) -> None:
        """Delete the lease if it is still the one at `revision`."""

    async def record_outcome(self, function: str, unix_ms: int, owner: str, outcome: str) -> None:
        """Note how the slot's call ended beside its claim (what the console shows); never
        raises: the outcome is information, the call is done either way."""

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

    async def take_lease(self, function: str, owner: str, until_ms: int, now_ms: int) -> Lease:
        return Lease(revision=1)  # one replica: its own count of running calls decides

    async def renew_lease(self, function: str, revision: int, value: bytes) -> int:
        return revision

    async def release_lease(self, function: str, revision: int) -> None:
        return None

    async def record_outcome(self, function: str, unix_ms: int, owner: str, outcome: str) -> None:
        pass  # a single replica keeps no shared record

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

    async def record_outcome(self, function: str, unix_ms: int, owner: str, outcome: str) -> None:
        try:
            await self.kv.put(claim_key(function, unix_ms), outcome_value(owner, outcome))
        except (NatsError, TimeoutError) as exc:
            log.debug("%s: outcome of the slot at %d not recorded: %s", function, unix_ms, exc)

    async def take_lease(self, function: str, owner: str, until_ms: int, now_ms: int) -> Lease:
        """Read the lease; if it is missing or expired, replace exactly the revision read (a
        replica that got there first makes this fail, and it holds the lease then)."""
        key = busy_key(function)
        try:
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError as gone:  # never set, or deleted: its delete marker's revision
                last = gone.entry.revision if gone.entry is not None else 0
            else:
                last = entry.revision or 0
                held_until, holder = read_lease(entry.value)
                if held_until > now_ms:
                    return Lease(holder=holder, until_ms=held_until)
            try:
                revision = await self.kv.update(key, lease_value(owner, until_ms), last=last)
            except KeyWrongLastSequenceError:
                return Lease(holder="another replica", until_ms=until_ms)
        except (NatsError, TimeoutError) as exc:
            raise ClaimError(f"busy lease of {function}: {exc or type(exc).__name__}") from None
        return Lease(revision=revision)

    async def renew_lease(self, function: str, revision: int, value: bytes) -> int:
        try:
            return await self.kv.update(busy_key(function), value, last=revision)
        except KeyWrongLastSequenceError:
            return 0
        except (NatsError, TimeoutError) as exc:
            raise ClaimError(
                f"renewing the lease of {function}: {exc or type(exc).__name__}"
            ) from None

    async def release_lease(self, function: str, revision: int) -> None:
        try:
            await self.kv.delete(busy_key(function), last=revision)
        except APIError as exc:
            if exc.err_code not in WRONG_LAST_SEQUENCE:  # else: not ours any more, leave it
                log.warning("could not release the busy lease of %s: %s", function, exc)
        except (NatsError, TimeoutError) as exc:
            log.warning("could not release the busy lease of %s: %s", function, exc)

    async def close(self) -> None:
        await self.connection.close()

"""The ledger's bucket: made and bounded by the processes that write it, opened as it is by
readers, or a handle on it when NATS cannot answer now.

nats-py exceptions stop here: callers see `LedgerUnavailable`, `StartupError` or a handle.
"""

from __future__ import annotations

import logging

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from connectors.core.errors import FerryError, StartupError
from connectors.jetstream.connect import describe
from connectors.jetstream.setup import BoundRefused, ensure_key_value
from ledger.settings import CallLedgerSettings

log = logging.getLogger("ferry.ledger")


class LedgerUnavailable(FerryError):
    """The ledger's bucket could not be read or written."""


async def open_bucket(
    js: JetStreamContext, settings: CallLedgerSettings, replicas: int
) -> KeyValue:
    """The ledger's bucket, created with `replicas` if missing, bounded to
    `call_ledger_max_bytes` (oldest entries first), StartupError if it cannot be."""
    return await ensure_key_value(
        js,
        settings.call_ledger_bucket,
        ttl=settings.call_ledger_ttl,
        history=1,
        replicas=replicas,
        max_bytes=("call_ledger_max_bytes", settings.call_ledger_max_bytes),
    )


async def open_existing(js: JetStreamContext, settings: CallLedgerSettings) -> KeyValue:
    """The ledger's bucket as it is, for a reader: never created, never reconfigured
    (LedgerUnavailable if it is not there)."""
    bucket = settings.call_ledger_bucket
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        raise LedgerUnavailable(f"call ledger unavailable: no bucket {bucket}") from None
    except (NatsError, TimeoutError) as exc:
        raise LedgerUnavailable(f"call ledger unavailable: {describe(exc)}") from None


def bucket_handle(js: JetStreamContext, bucket: str) -> KeyValue:
    """A handle on the bucket without asking NATS, for a process that must run without it:
    its writes fail (and are counted) until the bucket exists."""
    return KeyValue(name=bucket, stream=f"KV_{bucket}", pre=f"$KV.{bucket}.", js=js, direct=False)


async def open_or_handle(
    js: JetStreamContext, settings: CallLedgerSettings, replicas: int, *, who: str
) -> KeyValue | None:
    """The bucket to write to, or a handle on it if it cannot be had now (its writes fail and
    are counted until it exists). None when it exists but cannot be bounded: writing to it
    could fill JetStream's storage and stop intake, so the process writes nothing to it."""
    try:
        return await open_bucket(js, settings, replicas)
    except BoundRefused as exc:
        log.error("%s: the call ledger is not written (reads go on): %s", who, exc)
        return None
    except StartupError as exc:
        log.warning("%s: call ledger unavailable, calls run without it: %s", who, exc)
        return bucket_handle(js, settings.call_ledger_bucket)

"""Claim checks: call bodies too large for one NATS message, kept in a JetStream object store.

A call whose QueueRequest would not fit in the server's `max_payload` has its body stored as an
object in the bucket `large_body_bucket`; the queued QueueRequest keeps an empty `Body` (still
valid for Go readers) and the NATS message header `Ferry-Body-Object: {bucket}/{object}` names
the object. The worker sends the object to the function as it reads it, one chunk at a time, and
deletes it once the call's outcome is final and acknowledged; a dead letter keeps it (replay
needs it) until it is purged. Objects expire after the bucket's TTL (`large_body_ttl`) whatever
happens, so a process that dies half way leaves nothing behind for longer than that.

Each object belongs to one call: its metadata holds the SHA-256 of the queued message it was
written for (`Ferry-Call-Digest`, and the call id for people). The header is plain input to
anyone who may publish on the queue, so the worker trusts it only that far: it reads an object
only from `large_body_bucket` and only for the message that owns it, and deletes one only for
its owner. A forged reference (another bucket, another call's object) is dead-lettered as a call
without its body; the object it names is left alone. Replaying a dead letter re-publishes the
same message, so the owner stays the same.

nats-py's object store writes objects; reading is done here with direct gets, chunk by chunk,
because its `get` collects the whole object in memory.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from asyncq.jetstream import PublishError
from asyncq.settings import BUCKET_NAME, DEFAULT_TTL, QueueNatsSettings
from connectors.core.errors import FerryError, StartupError
from connectors.core.http1 import BodySourceError, StreamedBody
from connectors.jetstream.connect import describe
from connectors.jetstream.setup import ensure_object_store

log = logging.getLogger("queue_worker.large_bodies")

BODY_OBJECT = "Ferry-Body-Object"  # NATS message header: "{bucket}/{object name}"
OWNER_DIGEST = "Ferry-Call-Digest"  # object metadata: SHA-256 (hex) of the owning message
OWNER_CALL = "Ferry-Call-Id"  # object metadata: the owning call's id (for people, not checked)
CHUNK_BYTES = 128 * 1024
_NAME = re.compile(r"[0-9a-f-]{36}")  # what `put` names objects: a random UUID


class BodyMissing(FerryError):
    """The object a call refers to is not there (expired, deleted, or never written), or is
    not the call's to read (another bucket, another call's object)."""


def server_max_payload(js: JetStreamContext) -> int:
    """The largest message the connected server takes (its INFO `max_payload`).

    nats-py learns it at connect and keeps it on the client behind the JetStream context."""
    return int(js._nc.max_payload)


def parse_reference(value: str) -> tuple[str, str]:
    """(bucket, object) of a `Ferry-Body-Object` value; BodyMissing if it is not one of ours."""
    bucket, _, name = value.partition("/")
    if not BUCKET_NAME.fullmatch(bucket) or not _NAME.fullmatch(name):
        raise BodyMissing(f"{BODY_OBJECT} {value[:100]!r} does not name a body object")
    return bucket, name


class BodyStore:
    """One bucket of call bodies: create it, put, stream back and delete objects."""

    def __init__(
        self, js: JetStreamContext, bucket: str, *, ttl: float = DEFAULT_TTL, replicas: int = 1
    ) -> None:
        self.js = js
        self.bucket = bucket
        self.ttl = ttl
        self.replicas = replicas

    @classmethod
    def from_settings(cls, js: JetStreamContext, nats: QueueNatsSettings) -> BodyStore:
        """The store the settings name (`large_body_bucket`, `_ttl`, `nats_stream_replicas`)."""
        return cls(
            js, nats.large_body_bucket, ttl=nats.large_body_ttl, replicas=nats.nats_stream_replicas
        )

    async def ensure(self) -> None:
        """Create the bucket if it is missing (several processes may race to do it), or bring
        its replicas to `replicas`."""
        config = js_api.ObjectStoreConfig(
            bucket=self.bucket,
            description="ferry: bodies of queued calls too large for one message",
            ttl=self.ttl,
            storage=js_api.StorageType.FILE,
            replicas=self.replicas,
        )
        try:
            await ensure_object_store(self.js, config)
        except StartupError as exc:
            raise StartupError(f"large_body_bucket={self.bucket}: {exc}") from None

    def _store(self, bucket: str) -> ObjectStore:
        """A handle on `bucket` without asking the server first (`js.object_store` reads the
        stream's info on every call): a missing bucket shows in the operation itself."""
        return ObjectStore(name=bucket, stream=f"OBJ_{bucket}", js=self.js)

    async def put(self, body: bytes, *, owner: bytes, call_id: str = "") -> str:
        """Store `body` for the queued message `owner` (the message as published, which names
        the object); returns the `Ferry-Body-Object` value naming it. PublishError if
        JetStream did not store it (nothing is left behind then)."""
        name = str(uuid.uuid4())
        # chunks of 128 KiB (nats-py's default), smaller if the server takes less per message
        chunk = min(CHUNK_BYTES, server_max_payload(self.js) - 1024)
        meta = js_api.ObjectMeta(
            name=name,
            headers={OWNER_DIGEST: [_digest(owner)], OWNER_CALL: [call_id[:200]]},
            options=js_api.ObjectMetaOptions(max_chunk_size=chunk),
        )
        try:
            store = self._store(self.bucket)
            await store.put(name, body, meta=meta)
        except (NatsError, TimeoutError, OSError) as exc:
            raise PublishError(
                f"the body could not be stored in {self.bucket}: {describe(exc)}"
            ) from None
        return f"{self.bucket}/{name}"

    async def open(self, reference: str, owner: bytes) -> StreamedBody:
        """The object as a streamed body (read only while it is sent), if the message `owner`
        owns it. BodyMissing if it is gone or not the message's; PublishError if JetStream
        could not be asked."""
        info = await self._owned_info(reference, owner)
        return StreamedBody(info.size or 0, _ObjectChunks(self.js, info.bucket, info))

    async def delete(self, reference: str, owner: bytes) -> None:
        """Remove the object if the message `owner` owns it. A failure is logged, not raised
        (the bucket's TTL is the backstop); an object of another call is never touched."""
        try:
            info = await self._owned_info(reference, owner)
            await self._store(info.bucket).delete(info.name)
        except (NotFoundError, ObjectNotFoundError):
            pass  # already gone
        except BodyMissing as exc:
            log.debug("not deleting %s: %s", reference[:200], exc)
        except (PublishError, NatsError, TimeoutError) as exc:
            log.warning("could not delete %s (it expires with its bucket): %s", reference, exc)

    async def _owned_info(self, reference: str, owner: bytes) -> js_api.ObjectInfo:
        """The object's info, if it is in this store's bucket and `owner` owns it."""
        bucket, name = parse_reference(reference)
        if bucket != self.bucket:
            raise BodyMissing(
                f"{BODY_OBJECT} {reference} is not in large_body_bucket ({self.bucket}): not read"
            )
        try:
            info = await self._store(bucket).get_info(name)
        except (NotFoundError, ObjectNotFoundError):
            raise BodyMissing(
                f"the body object {reference} is gone (expired after large_body_ttl, or deleted)"
            ) from None
        except (NatsError, TimeoutError) as exc:
            raise PublishError(f"cannot read {reference}: {describe(exc)}") from None
        if _digest(owner) not in (info.headers or {}).get(OWNER_DIGEST, []):
            raise BodyMissing(f"the body object {reference} belongs to another call: not read")
        return info


def _digest(message: bytes) -> str:
    return hashlib.sha256(message).hexdigest()


class _ObjectChunks:
    """An object's chunks in order, one direct get each; iterating again starts over.

    The digest is checked before the last chunk is handed out, so a damaged object never
    reaches a function whole."""

    def __init__(self, js: JetStreamContext, bucket: str, info: js_api.ObjectInfo) -> None:
        self.js = js
        self.stream = f"OBJ_{bucket}"
        self.subject = f"$O.{bucket}.C.{info.nuid}"
        self.size = info.size or 0
        self.digest = info.digest or ""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._read()

    async def _read(self) -> AsyncIterator[bytes]:
        hashed = hashlib.sha256()
        seq, sent = 1, 0
        while sent < self.size:
            raw = await self._next_chunk(seq)
            data = raw.data or b""
            seq = (raw.seq or seq) + 1
            sent += len(data)
            hashed.update(data)
            if not data or sent > self.size:
                raise BodySourceError(f"{self.subject} does not hold {self.size} bytes")
            if sent == self.size and not self._digest_matches(hashed):
                raise BodySourceError(f"{self.subject} does not match the object's digest")
            yield data

    async def _next_chunk(self, seq: int) -> Any:
        try:
            return await self.js.get_msg(
                self.stream, seq=seq, subject=self.subject, direct=True, next=True
            )
        except NotFoundError:
            raise BodySourceError(f"{self.subject} ended early (the object was removed)") from None
        except (NatsError, TimeoutError) as exc:
            raise BodySourceError(f"cannot read {self.subject}: {describe(exc)}") from None

    def _digest_matches(self, hashed: Any) -> bool:
        text = self.digest.partition("=")[2]
        try:
            return bool(base64.urlsafe_b64decode(text) == hashed.digest())
        except ValueError:
            return False

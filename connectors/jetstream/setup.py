"""Streams, key-value buckets and object stores ferry owns: created with `nats_stream_replicas`,
kept at it.

Creating is safe when several replicas of a process race to do it. A stream ferry owns that
exists with another replica count is updated to the configured count (logged); nothing else
about an existing stream is changed. NATS's refusal becomes one `StartupError` line with NATS's
reason, naming `nats_stream_replicas` where the replica count can be the cause (more replicas
than servers), and the other stream where the subjects overlap one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from connectors.core.errors import StartupError
from connectors.jetstream.connect import describe

log = logging.getLogger("ferry.nats")

UNAVAILABLE = "JetStream is not available"

B = TypeVar("B")  # a bucket handle: KeyValue or ObjectStore

SCALE_WAIT_SECONDS = 30.0
PATIENCE_SECONDS = 30.0  # how long start-up keeps asking a JetStream that answers too late
T = TypeVar("T")


class JetStreamLate(StartupError):
    """JetStream did not answer an API request in time."""


def unavailable(exc: BaseException, message: str) -> StartupError:
    """The start-up error for a failed JetStream request: JetStreamLate (which `patiently`
    asks again) when it timed out, a plain StartupError otherwise."""
    return (JetStreamLate if is_late(exc) else StartupError)(message)


def is_late(exc: BaseException) -> bool:
    """A JetStream request that timed out, or that JetStream answered with "temporarily
    unavailable" (a cluster still electing its meta leader): worth asking again."""
    return isinstance(exc, TimeoutError | NatsTimeoutError | ServiceUnavailableError)


class BoundRefused(StartupError):
    """A bucket exists but NATS would not bound it as asked (it stays as it was)."""


async def ensure_stream(js: JetStreamContext, config: js_api.StreamConfig, replicas: int) -> None:
    """Create the stream with `replicas` if it is missing, else bring its replicas to that."""
    await patiently(f"stream {config.name}", lambda: _ensure_stream(js, config, replicas))


async def _ensure_stream(js: JetStreamContext, config: js_api.StreamConfig, replicas: int) -> None:
    name = config.name
    assert name is not None
    try:
        info = await _info(js, name)
        if info is None:
            try:
                await js.add_stream(dataclasses.replace(config, num_replicas=replicas))
            except APIError as exc:
                if is_late(exc):
                    raise
                if "already in use" not in str(exc.description or ""):
                    subjects = ", ".join(config.subjects or [])
                    raise StartupError(
                        _refusal(f"cannot create stream {name} ({subjects})", replicas, exc)
                    ) from None
                info = await _info(js, name)  # another process created it first
            else:
                subjects = ", ".join(config.subjects or [])
                log.info("created stream %s (subjects %s, %d replicas)", name, subjects, replicas)
                return
        if info is not None:
            await _keep_replicas(js, info, replicas)
    except (NatsError, TimeoutError) as exc:
        if isinstance(exc, APIError) and not is_late(exc):
            raise StartupError(_refusal(f"cannot use stream {name}", replicas, exc)) from None
        raise unavailable(exc, f"{UNAVAILABLE}: {describe(exc)}") from None


async def ensure_key_value(
    js: JetStreamContext,
    bucket: str,
    *,
    ttl: float,
    history: int,
    replicas: int,
    max_bytes: tuple[str, int] | None = None,
) -> KeyValue:
    """The bucket, created with `replicas` if missing, else with its replicas brought to that.

    `max_bytes` (the setting's name and its value) bounds the bucket, oldest entries going
    first when it is full; an existing bucket with another bound is updated to it (logged)."""
    config = js_api.KeyValueConfig(
        bucket=bucket,
        ttl=ttl,
        history=history,
        replicas=replicas,
        max_bytes=max_bytes[1] if max_bytes else None,
    )
    what = f"key-value bucket {bucket}"
    try:
        kv = await patiently(
            what,
            lambda: _ensure_bucket(
                js,
                f"KV_{bucket}",
                what,
                replicas,
                create=lambda: js.create_key_value(config),
                existing=lambda: js.key_value(bucket),
            ),
        )
    except StartupError as exc:
        if max_bytes is None or "insufficient storage" not in str(exc):
            raise
        name, limit = max_bytes
        raise StartupError(
            f"{name}={limit}: cannot create {what}: NATS says: insufficient storage resources"
            f" available (it reserves {name}; lower it or give JetStream more storage)"
        ) from None
    if max_bytes is not None:
        await _keep_bound(js, f"KV_{bucket}", what, max_bytes)
    return kv


async def _keep_bound(
    js: JetStreamContext, stream: str, what: str, max_bytes: tuple[str, int]
) -> None:
    """Bring a bucket's stream to `max_bytes` with the oldest messages discarded first
    (NATS makes key-value buckets refuse new writes when full, which would stop the ledger
    for as long as its entries live)."""
    name, limit = max_bytes
    try:
        info = await js.stream_info(stream)
        current = info.config
        if current.max_bytes == limit and current.discard == js_api.DiscardPolicy.OLD:
            return
        await js.update_stream(
            dataclasses.replace(current, max_bytes=limit, discard=js_api.DiscardPolicy.OLD)
        )
    except (NatsError, TimeoutError) as exc:
        reason = exc.description if isinstance(exc, APIError) else describe(exc)
        raise BoundRefused(f"{name}={limit}: cannot bound {what}: NATS says: {reason}") from None
    before = "no limit" if (current.max_bytes or -1) < 0 else f"{current.max_bytes} bytes"
    log.info("%s bounded to %s=%d (was %s), oldest entries first", what, name, limit, before)


async def ensure_object_store(
    js: JetStreamContext, config: js_api.ObjectStoreConfig
) -> ObjectStore:
    """The object store, created with `config` if missing, else with its replicas brought to
    `config.replicas` (nothing else of an existing bucket is changed)."""
    bucket = config.bucket or ""
    what = f"object store {bucket}"
    return await patiently(
        what,
        lambda: _ensure_bucket(
            js,
            f"OBJ_{bucket}",
            what,
            config.replicas or 1,
            create=lambda: js.create_object_store(bucket, config=config),
            existing=lambda: js.object_store(bucket),
        ),
    )


async def _ensure_bucket(
    js: JetStreamContext,
    stream: str,
    what: str,
    replicas: int,
    *,
    create: Callable[[], Awaitable[B]],
    existing: Callable[[], Awaitable[B]],
) -> B:
    """A bucket (key-value or object store: a stream underneath), created if missing (safe
    when several processes race to do it), else with its replicas brought to `replicas`.
    Callers ask `patiently`."""
    try:
        info = await _info(js, stream)
        if info is None:
            try:
                made = await create()
            except APIError as exc:
                if is_late(exc):
                    raise
                if "already in use" not in str(exc.description or ""):
                    raise StartupError(_refusal(f"cannot create {what}", replicas, exc)) from None
            else:
                log.info("created %s (%d replicas)", what, replicas)
                return made
        else:
            await _keep_replicas(js, info, replicas)
        return await existing()
    except (NatsError, TimeoutError) as exc:
        if isinstance(exc, APIError) and not is_late(exc):
            raise StartupError(_refusal(f"cannot use {what}", replicas, exc)) from None
        raise unavailable(exc, f"{UNAVAILABLE}: {describe(exc)}") from None


async def patiently(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt` again while JetStream does not answer in time, for up to PATIENCE_SECONDS: a
    cluster that is electing its leaders, or a busy server, answers an API request late, and
    a process starting then should wait for it rather than exit. A refusal is not retried."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE_SECONDS
    while True:
        try:
            return await attempt()
        except JetStreamLate as exc:
            if loop.time() >= deadline:
                raise
            log.warning("%s: %s; asking again", what, exc)
            await asyncio.sleep(1.0)


async def _info(js: JetStreamContext, stream: str) -> js_api.StreamInfo | None:
    try:
        return await js.stream_info(stream)
    except NotFoundError:
        return None


async def _keep_replicas(js: JetStreamContext, info: js_api.StreamInfo, replicas: int) -> None:
    current = info.config.num_replicas or 1
    if current == replicas:
        return
    name = info.config.name
    try:
        await js.update_stream(dataclasses.replace(info.config, num_replicas=replicas))
    except APIError as exc:
        raise StartupError(
            _refusal(f"cannot change stream {name} from {current} replicas", replicas, exc)
        ) from None
    log.warning(
        "stream %s had %d replicas; updated to nats_stream_replicas=%d", name, current, replicas
    )
    await _wait_for_peers(js, str(name), replicas)


async def _wait_for_peers(js: JetStreamContext, stream: str, replicas: int) -> None:
    """Wait (bounded) until the new peers have caught up: until then NATS refuses consumers."""
    deadline = asyncio.get_running_loop().time() + SCALE_WAIT_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        info = await js.stream_info(stream)
        cluster = info.cluster
        peers = (cluster.replicas or []) if cluster else []
        caught_up = len(peers) >= replicas - 1 and all(peer.current for peer in peers)
        if cluster is not None and cluster.leader and caught_up:
            return
        await asyncio.sleep(0.25)
    log.warning("stream %s: not every new replica has caught up yet", stream)


def _refusal(what: str, replicas: int, exc: APIError) -> str:
    """NATS's refusal in one line, naming `nats_stream_replicas` only where the replica count
    can be the cause: a subject another stream already holds is not."""
    reason = exc.description or describe(exc)
    if "overlap" in reason:
        return (
            f"{what}: another stream already holds some of its subjects "
            f"(find it with `nats stream ls`, or point nats_stream at it); NATS says: {reason}"
        )
    return f"nats_stream_replicas={replicas}: {what}: NATS says: {reason}"

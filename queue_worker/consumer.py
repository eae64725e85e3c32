"""The worker's durable pull consumer on the request stream.

A worker that is ready must be able to pull: a consumer that cannot be created or bound is a
`StartupError` (one line naming the consumer, the stream and NATS's reason; exit 2), never
"kept". nats-py exceptions stop here.

Two kinds of consumer are served:
- ferry's own (the default `faas-workers`/`NAME-workers`, or any consumer ferry created: its
  description says so): created if missing, else updated, so a changed `ack_wait` takes effect
  on the next start;
- another system's consumer named by `nats_durable` (OpenFaaS's `faas-request-workers`, say):
  bound as it is, never changed, if ferry can share it: a pull consumer with explicit acks
  whose filter is the queue's subject. A work-queue stream allows one consumer per subject, so
  this is how ferry serves a queue that already has one.
"""

from __future__ import annotations

import logging

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError

from connectors.core.errors import StartupError
from connectors.jetstream.connect import describe
from connectors.jetstream.setup import is_late, patiently, unavailable

log = logging.getLogger("queue_worker.jetstream")

FERRY_CONSUMER = "ferry queue worker"  # the description ferry gives the consumers it creates


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    subject: str,
    *,
    ack_wait: float,
    owned: bool = True,
) -> None:
    """Create, update or bind the durable pull consumer; StartupError if it cannot be used.

    `owned` says `durable` is ferry's own name for the queue (not one set by `nats_durable`):
    a consumer of that name is ferry's to create and update. Create-or-update is idempotent,
    so many replicas may start at once. `max_ack_pending` is unlimited: each worker bounds
    what it holds by its own slots.
    """
    where = f"consumer {durable} on stream {stream}"
    await patiently(
        where, lambda: _ensure(js, stream, durable, subject, ack_wait, owned=owned, where=where)
    )


async def _ensure(
    js: JetStreamContext,
    stream: str,
    durable: str,
    subject: str,
    ack_wait: float,
    *,
    owned: bool,
    where: str,
) -> None:
    try:
        existing = await _info(js, stream, durable)
        if existing is not None and not (owned or _created_by_ferry(existing)):
            await _check_shareable(js, existing, stream, subject, where)
            log.info("binding to %s as it is (not created by ferry)", where)
            return
        if existing is None:
            await _check_queue(js, stream, where)
        try:
            await js.add_consumer(stream, _config(durable, subject, ack_wait))
        except APIError as exc:
            if is_late(exc):
                raise
            if existing is None:
                raise StartupError(await _refusal(js, stream, subject, where, exc)) from None
            await _check_shareable(js, existing, stream, subject, where)
            reason = exc.description or describe(exc)
            log.warning("binding to %s as it is: NATS refused to update it: %s", where, reason)
    except (NatsError, TimeoutError) as exc:
        raise unavailable(exc, f"cannot create {where}: {describe(exc)}") from None


def _config(durable: str, subject: str, ack_wait: float) -> js_api.ConsumerConfig:
    return js_api.ConsumerConfig(
        durable_name=durable,
        description=FERRY_CONSUMER,
        filter_subject=subject,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=-1,
        max_waiting=512,
    )


async def _info(js: JetStreamContext, stream: str, durable: str) -> js_api.ConsumerInfo | None:
    try:
        info: js_api.ConsumerInfo = await js.consumer_info(stream, durable)
    except NotFoundError:
        return None
    return info


async def _check_queue(js: JetStreamContext, stream: str, where: str) -> None:
    """StartupError if a new consumer would run old calls again: on a stream that keeps its
    messages by limits (not a work queue, nor interest), every stored message, acknowledged
    by another worker or not, would be delivered to a consumer made now."""
    retention = (await js.stream_info(stream)).config.retention
    if retention == js_api.RetentionPolicy.LIMITS:
        raise StartupError(
            f"cannot create {where}: the stream keeps its messages by limits retention, not "
            "as a work queue, so a new consumer would run every call it holds again"
        )


def _created_by_ferry(info: js_api.ConsumerInfo) -> bool:
    return info.config.description == FERRY_CONSUMER


async def _check_shareable(
    js: JetStreamContext, info: js_api.ConsumerInfo, stream: str, subject: str, where: str
) -> None:
    """StartupError unless ferry can pull the queue's messages from this consumer as it is:
    a pull consumer, explicit acks, and a filter that is the queue's subject (or none, on a
    stream that holds only that subject)."""
    config = info.config
    filters = [config.filter_subject] if config.filter_subject else config.filter_subjects or []
    if not filters:
        filters = list((await js.stream_info(stream)).config.subjects or [])
    problems = []
    if config.deliver_subject:
        problems.append("it is a push consumer (ferry pulls)")
    if config.ack_policy != js_api.AckPolicy.EXPLICIT:  # a plain str once read back
        problems.append(f"its ack policy is {config.ack_policy}, not explicit")
    if filters != [subject]:
        problems.append(f"it reads {', '.join(filters)}, not {subject} alone")
    if problems:
        raise StartupError(f"cannot use {where}: {'; '.join(problems)}")


async def _refusal(
    js: JetStreamContext, stream: str, subject: str, where: str, exc: APIError
) -> str:
    """NATS's refusal in one line; when another consumer already reads the subject of a
    work-queue stream, that consumer is named with how to share it."""
    reason = exc.description or describe(exc)
    line = f"cannot create {where}: NATS says: {reason}"
    if "not unique" not in reason:
        return line
    others = [
        info.name
        for info in await js.consumers_info(stream)
        if subject in (info.config.filter_subject, *(info.config.filter_subjects or ()))
    ]
    if others:
        line += (
            f"; consumer {', '.join(others)} already reads {subject}: set nats_durable to "
            "its name to share it (a pull consumer with explicit acks), or delete it"
        )
    return line

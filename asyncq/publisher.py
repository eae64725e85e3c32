"""Puts async invocations on the queue: what the front door, `ferry publish` and replay use."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from nats.js import JetStreamContext
from nats.js import api as js_api

from asyncq import codec
from asyncq.codec import QueueRequest
from asyncq.delayed import DELAY_TARGET, delayed_stream_name, delayed_subject
from asyncq.jetstream import NeverStorable, NoStream, holds_function_subjects, publish
from asyncq.large_bodies import BODY_OBJECT, BodyStore, server_max_payload
from asyncq.layout import DEFAULT_STREAM, function_subject, queue_subject
from asyncq.pub_acks import PubAcks
from asyncq.schedule import (
    SchedulesUnavailable,
    ScheduleSupport,
    schedule_headers,
    schedule_subject,
)
from asyncq.timing import CallTiming
from connectors.core.errors import FerryError

QUEUE_ANNOTATION = "com.openfaas.queue"
# Room left in a message for what is not the base64 body: the rest of the JSON (the caller's
# headers, up to the front door's 64 KiB head) and the NATS headers.
MESSAGE_ROOM = 80 * 1024


def new_call_id() -> str:
    """A random (version 4) UUID in its usual text form, as `str(uuid.uuid4())` gives, for
    about half the CPU: every call through the front door needs one."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def build_request(
    function: str,
    *,
    body: bytes = b"",
    method: str = "POST",
    path: str = "",
    query_string: str = "",
    headers: Iterable[tuple[str, str]] = (),
    host: str = "",
    annotations: Mapping[str, str] | None = None,
    callback_url: str = "",
    new_id: Callable[[], str] = new_call_id,
) -> QueueRequest:
    """A QueueRequest as the OpenFaaS gateway would queue it, with X-Call-Id and X-Start-Time.

    An `X-Call-Id` already in `headers` is kept (so a re-sent call is de-duplicated); else
    `new_id` makes one (the front door's ledger makes ids on its sheets).
    """
    header: dict[str, list[str]] = {}
    for name, value in headers:
        header.setdefault(_canonical(name), []).append(value)
    if not header.get("X-Call-Id"):
        header["X-Call-Id"] = [new_id()]
    if not header.get("X-Start-Time"):
        header["X-Start-Time"] = [str(time.time_ns())]
    if callback_url:
        header["X-Callback-Url"] = [callback_url]
    annotations = dict(annotations or {})
    return QueueRequest(
        function=function,
        method=method,
        body=body,
        header=header,
        host=host,
        path=path,
        query_string=query_string,
        queue_name=annotations.get(QUEUE_ANNOTATION, ""),
        annotations=annotations,
        callback_url=callback_url,
    )


@functools.lru_cache(maxsize=1024)
def _canonical(name: str) -> str:
    """Go's textproto canonical form (`x-call-id` -> `X-Call-Id`), as the Go gateway stores.

    Cached: the same few header names come with every call."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


class Publisher:
    """Stores calls on the request stream; with a `BodyStore`, a body too large for one
    message goes to the object store and the message names it (`large_bodies`).

    `stream` names the queue's subjects (`nats_stream`); `stored_in` the stream that holds
    them, when that is another (OpenFaaS Pro's `OF_faas-request`, see `ensure_streams`);
    `delayed` the stream of waiting calls where the request stream has no schedules;
    `acks`, when given (and started), stores calls through its one reply subscription rather
    than nats-py's request per message (the same guarantee, a fraction of the CPU)."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str = DEFAULT_STREAM,
        bodies: BodyStore | None = None,
        *,
        stored_in: str = "",
        delayed: str = "",
        acks: PubAcks | None = None,
    ) -> None:
        self.js = js
        self.acks = acks
        self.subjects = stream
        self.stream = stored_in or stream
        self.bodies = bodies
        max_payload = server_max_payload(js) if bodies is not None else 0
        self.max_message = max_payload
        # Bodies up to this size fit inline whatever the rest of the call holds: no check.
        self.surely_inline = max(0, (max_payload - MESSAGE_ROOM) * 3 // 4)
        self.schedules = ScheduleSupport(js, self.stream, self.subjects)
        self.delayed = delayed_stream_name(stream, delayed)
        # Fair mode: calls go straight to their function's subject, where the worker's
        # per-function consumer takes them (no move by the worker's sorter). Only once the
        # stream holds those subjects (`learn_layout`), so a static worker still gets them.
        self.per_function = False

    async def learn_layout(self) -> bool:
        """Publish to per-function subjects from now on if the stream holds them."""
        self.per_function = await holds_function_subjects(self.js, self.stream, self.subjects)
        return self.per_function

    async def follow_layout(self, interval: float) -> None:
        """Re-learn the layout every `interval` (a fair worker may start after us)."""
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(FerryError):
                await self.learn_layout()

    def subject(self, request: QueueRequest) -> str:
        """Where a call goes to be taken at once (a delayed call goes there when due)."""
        if self.per_function:
            return function_subject(self.subjects, request.queue_name, request.function)
        return queue_subject(self.subjects, request.queue_name)

    def enqueue(
        self, request: QueueRequest, *, timeout: float = 5.0, timing: CallTiming | None = None
    ) -> Coroutine[Any, Any, js_api.PubAck]:
        """Store the request; raises PublishError if JetStream did not confirm it
        (NeverStorable if it never can). `timing` (a not-before or expiry time) rides in
        NATS headers.

        Not a coroutine itself: it hands back `publish`'s, one frame less for every call
        through the front door to enter and leave."""
        if timing is not None:
            return self._enqueue_timed(request, timing, timeout)
        if self.bodies is not None and len(request.body) > self.surely_inline:
            return self._enqueue_large(request, self.bodies, timeout)
        headers = {"Nats-Msg-Id": request.call_id} if request.call_id else None
        if self.per_function:
            return self._enqueue_fair(request, headers, timeout)
        return self._store(
            self.subject(request), codec.encode(request), headers, self.stream, timeout
        )

    def _store(
        self, subject: str, data: bytes, headers: dict[str, str] | None, stream: str, timeout: float
    ) -> Coroutine[Any, Any, js_api.PubAck]:
        """Publish and wait for JetStream's PubAck (through `acks` when there is one)."""
        if self.acks is not None:
            return self.acks.publish(subject, data, headers, stream=stream, timeout=timeout)
        return publish(self.js, subject, data, headers=headers, stream=stream, timeout=timeout)

    async def _enqueue_timed(
        self, request: QueueRequest, timing: CallTiming, timeout: float
    ) -> js_api.PubAck:
        """A call with a not-before time is stored as a NATS message schedule whose target is
        the subject it would have gone to at once (`asyncq.schedule`); where the stream has no
        schedules, on the delayed stream with that target in a header (`asyncq.delayed`)."""
        headers = timing.nats_headers()
        if request.call_id:
            headers["Nats-Msg-Id"] = request.call_id
        subject = self.subject(request)
        stream = self.stream
        if timing.not_before is not None:
            try:
                await self.schedules.check()
            except SchedulesUnavailable:
                headers[DELAY_TARGET] = subject
                subject, stream = delayed_subject(self.delayed, request.call_id), self.delayed
            else:
                headers.update(schedule_headers(subject, timing.not_before))
                subject = schedule_subject(self.subjects, request.call_id)
        if self.bodies is not None and len(request.body) > self.surely_inline:
            return await self._enqueue_large(
                request, self.bodies, timeout, subject, headers, stream
            )
        return await self._store(subject, codec.encode(request), headers, stream, timeout)

    async def _enqueue_fair(
        self, request: QueueRequest, headers: dict[str, str] | None, timeout: float
    ) -> js_api.PubAck:
        """To the function's subject; to the plain one if the stream no longer holds it."""
        data = codec.encode(request)
        try:
            return await self._store(self.subject(request), data, headers, self.stream, timeout)
        except NoStream:
            self.per_function = False
        subject = queue_subject(self.subjects, request.queue_name)
        return await self._store(subject, data, headers, self.stream, timeout)

    async def _enqueue_large(
        self,
        request: QueueRequest,
        bodies: BodyStore,
        timeout: float,
        subject: str | None = None,
        headers: dict[str, str] | None = None,
        stream: str = "",
    ) -> js_api.PubAck:
        """Inline if the whole message fits after all; else the body as an object first."""
        subject = subject or self.subject(request)
        stream = stream or self.stream
        if headers is None:
            headers = {"Nats-Msg-Id": request.call_id} if request.call_id else {}
        # NATS headers count too: Nats-Msg-Id (the call id), Ferry-Body-Object and the timing
        extra = sum(len(k) + len(v) + 4 for k, v in headers.items() if k != "Nats-Msg-Id")
        room = self.max_message - 256 - len(request.call_id) - extra
        if (len(request.body) + 2) // 3 * 4 < room:
            data = codec.encode(request)
            if len(data) <= room:
                return await self._store(subject, data, headers or None, stream, timeout)
        data = codec.encode(dataclasses.replace(request, body=b""))
        if len(data) > room:
            raise NeverStorable(
                f"the call without its body ({len(data)} bytes) is larger than NATS's "
                f"max_payload ({self.max_message} bytes)"
            )
        reference = await bodies.put(request.body, owner=data, call_id=request.call_id)
        # Not deleted if the publish fails: the call may be stored all the same (a lost PubAck),
        # and it would need its body. An orphan goes with the bucket's TTL.
        ack = await self._store(subject, data, {**headers, BODY_OBJECT: reference}, stream, timeout)
        if ack.duplicate:
            await bodies.delete(reference, data)  # the call is stored already, with its own object
        return ack

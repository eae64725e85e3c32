"""`POST /async-function/{name}[/{path}]`: validate, store on JetStream, answer 202.

The answer is 202 only after JetStream acknowledged storing the message; any doubt (NATS
disconnected, no PubAck within `publish_timeout`) is a 503. A publish that timed out may still
be stored, so the 503 carries the call's `X-Call-Id` too: a client that retries with it gets
the call run once (the stream de-duplicates by `Nats-Msg-Id` within its duplicate window).

`FrontDoor` works on plain values and returns an `Answer`, so that both ways a request reaches
it (aiohttp's routes here, and the lean listener in `gateway.listener`) behave the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web

from asyncq.jetstream import NeverStorable, PublishError
from asyncq.layout import queue_subject
from asyncq.publisher import Publisher, build_request, new_call_id
from asyncq.settings import DEFAULT_MAX_DELAY
from asyncq.timing import DELAY_HEADERS, TimingProblem, read_timing
from connectors.core import tracing
from connectors.core.errors import CallbackRefused
from connectors.core.invoker import NOT_FORWARDED
from connectors.core.targets import call_id_problem, function_name_problem
from connectors.core.urlguard import CallbackPolicy
from gateway.call import AsyncCall
from gateway.functions import Function, FunctionCatalog
from gateway.metrics import GatewayMetrics
from gateway.queued_calls import QueuedCalls

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from asyncq.codec import QueueRequest

log = logging.getLogger("ferry.gateway")
T = TypeVar("T")

# Not stored in the queued request: one hop's headers, those the worker's client rebuilds,
# X-Start-Time, which the front door sets itself, and the delay and expiry headers, which
# become NATS headers (`asyncq.timing`).
NOT_QUEUED = NOT_FORWARDED | {"x-start-time"} | DELAY_HEADERS


class TooLarge(Exception):
    """The request body is above `max_body_bytes`."""


@dataclass(slots=True)
class Answer:
    """What the front door says to one request: a status, headers and a short text."""

    status: int
    text: str = ""
    headers: tuple[tuple[str, str], ...] = ()


class FrontDoor:
    def __init__(
        self,
        catalog: FunctionCatalog,
        publisher: Publisher,
        policy: CallbackPolicy,
        metrics: GatewayMetrics,
        *,
        max_body_bytes: int,
        publish_timeout: float,
        connected: Callable[[], bool],
        ledger: QueuedCalls | None = None,
        max_delay: float = DEFAULT_MAX_DELAY,
    ) -> None:
        self.catalog = catalog
        self.publisher = publisher
        self.policy = policy
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.publish_timeout = publish_timeout
        self.connected = connected
        self.ledger = ledger
        self.max_delay = max_delay
        # with the ledger on, ids are made on its sheets (one ledger write for many calls)
        self.new_call_id = ledger.new_call_id if ledger is not None else new_call_id

    # -- the transport-neutral core ---------------------------------------------------------

    async def admit(self, call: AsyncCall) -> Function | Answer:
        """The function a call is for, or the answer refusing it (before its body is read)."""
        name = call.name
        function = self.catalog.current.find(name)
        if function is None:
            if (problem := function_name_problem(name)) is not None:
                return self._reject("bad_name", 400, problem)  # never looked up upstream
            function = await self.catalog.lookup(name)
        if function is None:
            return self._reject("not_found", 404, f"function {name} not found")
        if call.callback_url:
            try:
                self.policy.check_url(call.callback_url)
            except CallbackRefused as exc:
                return self._reject("bad_callback", 400, f"X-Callback-Url refused: {exc}")
        if (problem := _call_id_problem(call.headers)) is not None:
            return self._reject("bad_call_id", 400, problem)
        if call.asked:
            try:
                call.timing = read_timing(call.asked, now=time.time(), max_delay=self.max_delay)
            except TimingProblem as exc:
                return self._reject("bad_timing", 400, str(exc))
        return function

    async def enqueue(self, function: Function, call: AsyncCall, body: bytes) -> Answer:
        """Store an admitted call on JetStream: 202 once it is stored, 503 if it may not be."""
        queued = build_request(
            call.name,
            body=body,
            method=call.method,
            path=f"/{call.tail}" if call.tail else "",
            query_string=call.query_string,
            headers=_queued_headers(call.headers),
            host=call.host,
            annotations=function.annotations,
            callback_url=call.callback_url,
            new_id=self.new_call_id,
        )
        ids = (("X-Call-Id", queued.call_id), ("X-Start-Time", queued.start_time))
        if not self.connected():
            if self.ledger is not None:
                self.ledger.not_sent(queued)
            return self._unavailable("not connected to NATS", ids)
        span = self._send_span(queued) if tracing.ENABLED else None
        started = time.perf_counter()
        timing = call.timing
        if self.ledger is not None:  # written beside the publish, never awaited
            self.ledger.queued(queued, timing.not_before if timing else None)
        if timing is None:  # a plain call: the publisher's plain path
            publishing = self.publisher.enqueue(queued, timeout=self.publish_timeout)
        else:
            publishing = self.publisher.enqueue(queued, timeout=self.publish_timeout, timing=timing)
        try:
            ack = await (publishing if span is None else _sent(span, publishing))
        except NeverStorable as exc:  # retrying cannot help: not a 503
            if self.ledger is not None:
                self.ledger.not_queued(queued)
            return self._reject("too_large", 413, f"the call cannot be queued: {exc}")
        except PublishError as exc:
            if self.ledger is not None:
                self.ledger.not_queued(queued)
            return self._unavailable(str(exc), ids)
        self.metrics.publish_duration.observe(time.perf_counter() - started)
        if self.ledger is not None:
            self.ledger.stored(queued)
        if ack.duplicate:
            self.metrics.async_calls.inc("duplicate")
        else:
            delayed = timing is not None and timing.not_before is not None
            self.metrics.async_calls.inc("scheduled" if delayed else "accepted")
        return Answer(202, headers=ids)

    def _send_span(self, queued: QueueRequest) -> Span:
        """The call's PRODUCER span (tracing on); the queued call then carries its context."""
        from connectors.core import spans

        subject = queue_subject(self.publisher.stream, queued.queue_name)
        return spans.start_send(queued.function, "nats", subject, queued.call_id, queued.header)

    def too_large(self) -> Answer:
        return self._reject(
            "too_large", 413, f"request body is larger than {self.max_body_bytes} bytes"
        )

    # -- aiohttp ----------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/async-function/{name}", self.handle),
            web.post("/async-function/{name}/", self.handle),
            web.post("/async-function/{name}/{tail:.+}", self.handle),
        ]

    async def handle(self, request: web.Request) -> web.Response:
        call = AsyncCall(
            name=request.match_info["name"],
            tail=request.match_info.get("tail") or "",
            query_string=request.raw_path.partition("?")[2],
            headers=list(request.headers.items()),
            host=request.host,
            callback_url=request.headers.get("X-Callback-Url", "").strip(),
            method=request.method,
            asked={
                name: value.strip()
                for name in DELAY_HEADERS
                if (value := request.headers.get(name)) is not None
            },
        )
        admitted = await self.admit(call)
        if isinstance(admitted, Answer):
            return _response(admitted)
        try:
            body = await self._read_body(request)
        except TooLarge:
            return _response(self.too_large())
        return _response(await self.enqueue(admitted, call, body))

    async def _read_body(self, request: web.Request) -> bytes:
        """The whole body; the app's `client_max_size` is `max_body_bytes`, so aiohttp stops
        reading (and we answer 413) as soon as a body, declared or chunked, goes over it."""
        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            raise TooLarge
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise TooLarge from None

    # -- refusals ---------------------------------------------------------------------------

    def _reject(self, outcome: str, status: int, text: str) -> Answer:
        self.metrics.async_calls.inc(outcome)
        return Answer(status, text + "\n")

    def _unavailable(self, reason: str, ids: tuple[tuple[str, str], ...]) -> Answer:
        """503, with the call's id: a publish that timed out may still have been stored, so a
        client that retries must send the same `X-Call-Id` (JetStream keeps the call once)."""
        log.warning("an async call may not have been queued: %s", reason)
        self.metrics.async_calls.inc("unavailable")
        text = (
            f"the call may not have been queued: NATS JetStream is unavailable ({reason}); "
            f"retry with the header X-Call-Id: {ids[0][1]}\n"
        )
        return Answer(503, text, headers=ids)


async def _sent(span: Span, publishing: Awaitable[T]) -> T:
    from connectors.core import spans

    return await spans.sent(span, publishing)


def _call_id_problem(headers: Iterable[tuple[str, str]]) -> str | None:
    """Why an `X-Call-Id` the caller chose cannot be taken: the call routes could never address
    it (a `/`, say), or it is too long to log and list."""
    for name, value in headers:
        if value and len(name) == 9 and name.lower() == "x-call-id":
            problem = call_id_problem(value)
            if problem is not None:
                return problem
    return None


def _queued_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in NOT_QUEUED]


def _response(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, text=answer.text or None, headers=answer.headers)

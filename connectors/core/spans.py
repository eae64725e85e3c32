"""The spans ferry makes, after the OpenTelemetry messaging conventions (imported only when
`connectors.core.tracing` turned tracing on: this module needs the `ferry[tracing]` extra).

- `send {function}` (PRODUCER): the front door storing one async call; its context goes with
  the queued call as its `traceparent` (and `tracestate`) header.
- `process {function}` / `process {topic}` (CONSUMER): one delivery of a queued call to the
  worker, or one event a connector received; parented to the context the message carried (and
  linked to it), else a new trace.
- `invoke {function}` and `callback {function}` (CLIENT): one HTTP request to a function or to a
  callback receiver; the receiver gets this span's context in `traceparent`.

A span made current (`Scope`) is what the CLIENT spans and the log lines find: every message is
handled in its own task or coroutine chain, so the context never leaks from one to the next.
Nothing secret goes into a span: no header values, no URL query or path of a callback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Iterable, Mapping, MutableMapping, Sequence
from typing import TypeVar

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from connectors.core.numbers import ascii_int
from connectors.core.version import VERSION

# the tracing module turns this one on; this one never imports it back (no circle)
FLUSH_AT_EXIT_SECONDS = 5.0  # at most this long (or OTEL_BSP_EXPORT_TIMEOUT) for the last spans

T = TypeVar("T")
Attributes = Mapping[str, AttributeValue]

log = logging.getLogger(__name__)

_tracer: trace.Tracer = trace.NoOpTracer()
_provider: TracerProvider | None = None
_fields: frozenset[str] = frozenset({"traceparent", "tracestate"})  # the propagator's headers


# -- set-up -------------------------------------------------------------------------------------


def install(service_name: str, exporters: Sequence[str], environ: Mapping[str, str]) -> None:
    """A tracer provider with one batching processor per exporter. Its queue is bounded
    (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048 spans by default): while an endpoint is down, spans past
    it are dropped, never held. The SDK's own warnings (one per dropped span) are silenced;
    a failed export is still logged, once per batch."""
    global _tracer, _provider, _fields
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    _provider = provider
    _tracer = provider.get_tracer("ferry", VERSION)
    _fields = frozenset(f.lower() for f in propagate.get_global_textmap().fields)
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.addFilter(TraceIdFilter())
    log.info("tracing on: spans exported with %s", ", ".join(exporters))


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def uninstall(timeout: float = FLUSH_AT_EXIT_SECONDS) -> None:
    """Export what is queued and stop, waiting at most `timeout` seconds: the SDK's own
    shutdown may wait on a down endpoint for its whole export timeout (30 s by default)."""
    provider = _provider
    if provider is None:
        return
    worker = threading.Thread(target=provider.shutdown, name="ferry-tracing-stop", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log.warning("tracing: the last spans were not exported within %gs", timeout)


class TraceIdFilter(logging.Filter):
    """Adds `trace_id` to each log record made while a span is current (JSON logs show it as a
    field; console lines end with it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        found = trace.get_current_span().get_span_context()
        if found.is_valid:
            record.trace_id = trace.format_trace_id(found.trace_id)
        return True


# -- carriers: plain header lists, and the queued call's header map -----------------------------


class _Pairs(Getter[Sequence[tuple[str, str]]]):
    def get(self, carrier: Sequence[tuple[str, str]], key: str) -> list[str] | None:
        found = [v for k, v in carrier if k.lower() == key]
        return found or None

    def keys(self, carrier: Sequence[tuple[str, str]]) -> list[str]:
        return [k for k, _ in carrier]


class _AppendPair(Setter[list[tuple[str, str]]]):
    def set(self, carrier: list[tuple[str, str]], key: str, value: str) -> None:
        carrier.append((key, value))


class _Lists(Getter[Mapping[str, list[str]]]):
    def get(self, carrier: Mapping[str, list[str]], key: str) -> list[str] | None:
        for name, values in carrier.items():
            if name.lower() == key and values:
                return list(values)
        return None

    def keys(self, carrier: Mapping[str, list[str]]) -> list[str]:
        return list(carrier)


class _SetList(Setter[MutableMapping[str, list[str]]]):
    """Writes Go's canonical header spelling (`Traceparent`), as the Go gateway would."""

    def set(self, carrier: MutableMapping[str, list[str]], key: str, value: str) -> None:
        canonical = "-".join(p[:1].upper() + p[1:].lower() for p in key.split("-"))
        carrier[canonical] = [value]


_PAIRS, _APPEND, _LISTS, _SET = _Pairs(), _AppendPair(), _Lists(), _SetList()


def extract(headers: Sequence[tuple[str, str]]) -> context.Context:
    """The trace context a header list carries (an empty context if none)."""
    return propagate.extract(headers, getter=_PAIRS)


def inject(span: Span, headers: list[tuple[str, str]]) -> None:
    """Replace the trace headers in `headers` (in place) with `span`'s context."""
    headers[:] = [(k, v) for k, v in headers if k.lower() not in _fields]
    propagate.inject(headers, context=trace.set_span_in_context(span), setter=_APPEND)


def carried(pairs: Iterable[tuple[str, bytes | str | None]]) -> list[tuple[str, str]]:
    """Of a message's headers (Kafka's are bytes), the trace headers, as text."""
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        if value is not None and name.lower() in _fields:
            out.append((name, value if isinstance(value, str) else value.decode("latin-1")))
    return out


# -- spans made current -------------------------------------------------------------------------


class Scope:
    """A span that is the current one in this task until `end`."""

    __slots__ = ("_token", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._token = context.attach(trace.set_span_in_context(span))

    def end(self) -> None:
        context.detach(self._token)
        self.span.end()


def start_send(
    function: str, system: str, destination: str, message_id: str, header: dict[str, list[str]]
) -> Span:
    """The PRODUCER span of a call being queued, child of the caller's context in `header`;
    `header` (the queued call's) then carries this span's context instead."""
    parent = propagate.extract(header, getter=_LISTS)
    span = _tracer.start_span(
        f"send {function}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": system,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": destination,
            "messaging.message.id": message_id,
            "faas.invoked_name": function,
        },
    )
    for key in [k for k in header if k.lower() in _fields]:
        del header[key]
    propagate.inject(header, context=trace.set_span_in_context(span), setter=_SET)
    return span


async def sent(span: Span, publishing: Awaitable[T]) -> T:
    """Await the publish; the span ends with its outcome (the exception, if any, goes on)."""
    try:
        return await publishing
    except Exception as exc:
        failed(span, exc)
        raise
    finally:
        span.end()


def start_process(
    name: str,
    carrier: Sequence[tuple[str, str]] | Mapping[str, list[str]],
    attributes: Attributes,
) -> Scope:
    """The CONSUMER span of one delivery, made current: parented to the context the message
    carries and linked to it (the relation that holds for a retried or delayed delivery), or
    the root of a new trace."""
    if isinstance(carrier, Mapping):
        parent = propagate.extract(carrier, getter=_LISTS)
    else:
        parent = propagate.extract(carrier, getter=_PAIRS)
    producer = trace.get_current_span(parent).get_span_context()
    links = [Link(producer)] if producer.is_valid else None
    span = _tracer.start_span(
        f"process {name}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            **attributes,
        },
        links=links,
    )
    return Scope(span)


def start_client(
    name: str, url: str, headers: list[tuple[str, str]], attributes: Attributes
) -> Span:
    """A CLIENT span for one HTTP request, child of the current span; `headers` (the request's,
    changed in place) then carry its context. Only the server's host and port go into the span."""
    host, _, port = url.split("/", 3)[2].rpartition("@")[2].rpartition(":")
    span = _tracer.start_span(
        name,
        kind=SpanKind.CLIENT,
        attributes={
            "server.address": host or port,
            "server.port": (ascii_int(port, 5) or 80) if host else 80,
            **attributes,
        },
    )
    inject(span, headers)
    return span


def answered(span: Span, status: int | None, error: str = "") -> None:
    """End a CLIENT span with the HTTP status it got (an error from 400 on), or the error."""
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if status is None or status >= 400:
        span.set_attribute("error.type", str(status) if status is not None else "unanswered")
        span.set_status(Status(StatusCode.ERROR, error or f"status {status}"))
    span.end()


def failed(span: Span, error: BaseException | str) -> None:
    """Mark `span` failed (it is not ended)."""
    if isinstance(error, BaseException):
        span.set_attribute("error.type", type(error).__qualname__)
        error = f"{type(error).__name__}: {error}"
    span.set_status(Status(StatusCode.ERROR, error[:500]))


# -- the current span ----------------------------------------------------------------------------


def current() -> Span:
    return trace.get_current_span()


def note(name: str, attributes: Attributes | None = None) -> None:
    """An event on the current span: a dead letter, a cancel, a hand-back."""
    trace.get_current_span().add_event(name, attributes)


def outcome(result: str, attributes: Attributes, error: str = "") -> None:
    """What became of the current (process) span's delivery; `error` marks it failed."""
    span = trace.get_current_span()
    span.set_attribute("ferry.outcome", result)
    span.set_attributes(attributes)
    if error:
        failed(span, error)

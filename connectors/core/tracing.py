"""Whether this process traces, decided once at start-up from the standard `OTEL_*` variables.

Tracing is off unless an exporter is configured: `OTEL_TRACES_EXPORTER=otlp` (or `console`),
or, with `OTEL_TRACES_EXPORTER` unset, an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
turn it off whatever else is set. When it is off, nothing of OpenTelemetry is imported and
every hook in the hot paths is one test of `ENABLED`; when it is on, `connectors.core.spans`
(which needs the `ferry[tracing]` extra) makes the spans.

This module imports no OpenTelemetry package itself: `connectors.core` is imported by
processes that may not have the extra installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

from connectors.core.errors import ConfigError

ENABLED = False  # read by every hook; set once, by `configure`

HELP = (
    "Tracing (OpenTelemetry, needs ferry[tracing]): off unless an exporter is configured by\n"
    "the standard variables: OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or\n"
    "OTEL_TRACES_EXPORTER=otlp|console (OTLP over http/protobuf); OTEL_SERVICE_NAME,\n"
    "OTEL_TRACES_SAMPLER and the other OTEL_* variables as the SDK reads them. See\n"
    "docs/tracing.md."
)

EXPORTERS = frozenset({"otlp", "console"})
PROTOCOL = "http/protobuf"
_HEX = frozenset("0123456789abcdef")


def exporters(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The span exporters the environment asks for; () when tracing is off.

    Raises ConfigError for an exporter or OTLP protocol ferry does not ship."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        wanted = tuple(dict.fromkeys(n.strip() for n in named.split(",") if n.strip()))
        if "none" in wanted:
            return ()
        unknown = [n for n in wanted if n not in EXPORTERS]
        if unknown:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER={named}: ferry exports spans with otlp or console "
                f"(or none), not {', '.join(unknown)}"
            )
    elif any(
        environ.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        wanted = ("otlp",)
    else:
        return ()
    if "otlp" in wanted:
        for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = environ.get(name, "").strip().lower()
            if protocol:
                if protocol != PROTOCOL:
                    raise ConfigError(
                        f"{name}={protocol}: ferry exports OTLP over {PROTOCOL} only "
                        "(a collector's port 4318)"
                    )
                break
    return wanted


def configure(environ: Mapping[str, str]) -> bool:
    """Decide, once, whether this process traces (sets `ENABLED`); ConfigError if tracing is
    asked for but the `ferry[tracing]` extra is not installed. Nothing is imported yet."""
    global ENABLED
    wanted = exporters(environ)
    if wanted and importlib.util.find_spec("opentelemetry.sdk") is None:
        raise ConfigError(
            "tracing is configured (OTEL_* variables) but OpenTelemetry is not installed: "
            "install ferry[tracing]"
        )
    ENABLED = bool(wanted)
    return ENABLED


def start(service_name: str, environ: Mapping[str, str]) -> None:
    """Set up the tracer provider and its exporters, if `configure` turned tracing on.
    `service_name` is used unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` name one."""
    if ENABLED:
        from connectors.core import spans

        spans.install(service_name, exporters(environ), environ)


def stop() -> None:
    """Send the spans still queued, for a bounded time (an exporter's endpoint may be down)."""
    if ENABLED:
        from connectors.core import spans

        spans.uninstall()


def dead_letter(function: str, reason: str) -> None:
    """A final failure, as an event on the current span (which it marks failed): the span of
    the delivery or event that gave up. Call only with tracing on."""
    from connectors.core import spans

    spans.note("ferry.dead_letter", {"faas.invoked_name": function, "ferry.reason": reason})
    spans.outcome("failed", {}, reason)


def trace_id(traceparent: list[str] | None) -> str | None:
    """The trace id of a W3C `traceparent` header value (the first of its values), or None if
    there is none or it is malformed. Used to record a call's trace without any tracing set up:
    the call ledger reads it from the queued call's `Traceparent` header."""
    if not traceparent:
        return None
    value = traceparent[0]
    if len(value) < 55 or value[2] != "-" or value[35] != "-":
        return None
    found = value[3:35]
    if not _HEX.issuperset(found) or found == "0" * 32:
        return None
    return found

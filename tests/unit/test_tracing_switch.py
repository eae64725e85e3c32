"""Tracing is off unless an exporter is configured by the standard OTEL_* variables; when off,
nothing of OpenTelemetry is imported by any process's modules."""

from __future__ import annotations

import subprocess
import sys

import pytest

from connectors.core.errors import ConfigError
from connectors.core.tracing import exporters

ENDPOINT = "http://127.0.0.1:4318"


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, ()),
        ({"OTEL_SERVICE_NAME": "ferry", "OTEL_TRACES_SAMPLER": "always_on"}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, ()),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),  # to the default localhost:4318
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ("console", "otlp")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ()),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, ()),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_TRACES_EXPORTER": "otlp"},
            ("otlp",),
        ),
    ],
)
def test_tracing_is_on_only_when_an_exporter_is_configured(
    env: dict[str, str], wanted: tuple[str, ...]
) -> None:
    assert exporters(env) == wanted


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
    ],
)
def test_an_exporter_ferry_does_not_ship_is_a_configuration_error(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        exporters(env)


IMPORT_EVERY_PROCESS = """
import os, sys
from connectors.core import tracing
import ferry.cli, gateway.service, queue_worker.worker, console.service
import connectors.kafka.connector, connectors.sqs.connector, connectors.cron.connector
tracing.configure(os.environ)
tracing.start("ferry-test", os.environ)
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")))
"""


def _imported(**env: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_PROCESS],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [m for m in done.stdout.strip().split(",") if m]


def test_with_tracing_off_no_process_imports_opentelemetry() -> None:
    assert _imported() == []
    assert _imported(OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT=ENDPOINT) == []
    # the same set-up with an exporter configured does import it
    assert "opentelemetry.sdk.trace" in _imported(OTEL_EXPORTER_OTLP_ENDPOINT=ENDPOINT)

"""With tracing on, log lines made while a span is current carry its trace id."""

from __future__ import annotations

import logging

from connectors.core.logs import ConsoleFormatter


def test_a_console_line_ends_with_the_trace_id_when_the_record_has_one() -> None:
    formatter = ConsoleFormatter("%(levelname)s %(message)s")
    record = logging.makeLogRecord({"msg": "echo call 1: retrying", "levelname": "WARNING"})
    assert formatter.format(record) == "WARNING echo call 1: retrying"
    record.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert formatter.format(record) == (
        "WARNING echo call 1: retrying trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
    )

"""Finding 13: control characters from input are escaped in console logs, so a value can
never forge a log line (JSON logs escape them already)."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from connectors.core.logs import ConsoleFormatter, escape_controls
from tests.support.http import Call, FakeGateway
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest

FORGED = "2026-01-01 00:00:00 ERROR   ferry.queue_worker: forged"


def test_console_records_stay_on_one_line_whatever_their_arguments() -> None:
    record = logging.makeLogRecord(
        {
            "msg": "call %s failed",
            "args": (f"x\r\n{FORGED}\x1b[2K\u2028\x85",),
            "levelname": "ERROR",
        }
    )
    line = ConsoleFormatter("%(levelname)s %(message)s").format(record)
    assert line == "ERROR call x\\r\\n" + FORGED + "\\x1b[2K\\u2028\\x85 failed"
    assert record.getMessage().count("\n") == 1  # the record itself is left as it was


def test_plain_text_is_left_alone() -> None:
    assert escape_controls("echo call 4f0f-1d7c: café ☕") == "echo call 4f0f-1d7c: café ☕"


async def _refuse(call: Call) -> web.Response:
    return web.Response(status=400)


async def test_a_worker_process_logs_hostile_values_escaped(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("broken", _refuse)
    call_id = f"id\x0b\x0c{FORGED}\u2028{FORGED}\x1b[1A"
    await queue.publish("broken", b"x", headers=[("X-Call-Id", call_id)])
    await queue.publish_raw(json.dumps({"Function": f"echo\r\n{FORGED}"}).encode())
    worker = await FerryProcess("queue-worker", queue.env()).start()
    try:
        await eventually(lambda: _dead_letters(queue, 2), what="both dead letters")
        assert await worker.stop() == 0
        output = worker.output()
    finally:
        await worker.close()
    assert FORGED in output
    for line in output.splitlines():
        assert not line.startswith(FORGED), output
    assert not any(c in output for c in "\x0b\x0c\x1b\u2028\r"), output


async def _dead_letters(queue: QueueUnderTest, count: int) -> bool:
    return len(await queue.dead_letters()) >= count

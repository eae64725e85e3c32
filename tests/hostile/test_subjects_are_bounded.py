"""Finding 1: no input can make ferry use a subject NATS refuses (it would drop the connection)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from asyncq.layout import dead_letter_subject, durable_name, hashed_token, queue_subject
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest
from tests.support.streams import stored_messages
from tests.support.wire import exchange, request

# One NATS subject token: no whitespace, no wildcard, no separator, printable ASCII.
_TOKEN = re.compile(r"[!-~]+")
_SUBJECT_LIMIT = 256  # far below nats-server's 4 KiB control line


def _tokens(subject: str) -> list[str]:
    return subject.split(".")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=5000))
def test_every_subject_built_from_a_name_is_short_and_made_of_plain_tokens(name: str) -> None:
    for subject in (
        dead_letter_subject("faas-dead-letter", name),
        queue_subject("faas-request", name),
    ):
        assert len(subject) <= _SUBJECT_LIMIT
        assert all(_TOKEN.fullmatch(t) and t not in {"*", ">"} for t in _tokens(subject))
    assert len(queue_subject("faas-request", name).split(".")) <= 2  # the stream takes `.*`
    assert re.fullmatch(r"[A-Za-z0-9_-]+", durable_name(name) if name else "faas-workers")


def test_valid_names_are_kept_and_others_are_hashed_the_same_everywhere() -> None:
    assert dead_letter_subject("dl", "echo.team-a") == "dl.echo.team-a"
    assert queue_subject("rq", "slow-lane") == "rq.slow-lane"
    hostile = "a b.*>" + "x" * 5000
    assert queue_subject("rq", hostile) == queue_subject("rq", hostile)
    assert queue_subject("rq", hostile) != queue_subject("rq", hostile + "y")
    assert durable_name(hostile).startswith(queue_subject("rq", hostile).split(".")[1])


async def test_a_4kb_function_name_is_dead_lettered_and_valid_calls_still_run(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("echo")
    long_name = "f" * 4096
    await queue.publish_raw(json.dumps({"Function": long_name, "Method": "POST"}).encode())
    await queue.publish("echo", b"after")
    async with queue.worker() as worker:
        await eventually(lambda: gateway.calls_to("echo"), what="the valid call")
        await eventually(lambda: queue.dead_letters(), what="the dead letter")
        assert worker.ready()
        assert worker._nc is not None and worker._nc.is_connected
    [dead] = await queue.dead_letters()
    assert dead.subject == f"{queue.dead_stream}.{hashed_token(long_name)}"
    assert dead.headers["Ferry-Function"] == long_name[:1024]  # the name, bounded
    assert "is not a DNS-1123 label" in dead.headers["Ferry-Dead-Reason"]
    assert json.loads(dead.data)["Function"] == long_name  # the message is kept whole
    assert await queue.pending() == 0


async def test_the_front_door_answers_400_to_a_name_openfaas_would_not_accept(
    queue: QueueUnderTest, tmp_path: Path
) -> None:
    functions = write_functions(tmp_path / "f.yml", {"echo": {"url": "http://127.0.0.1:9"}})
    async with running_gateway(gateway_env(queue, functions_file=str(functions))) as front:
        for name in ("f" * 4096, "Echo", "a_b", "-x", "echo.team.x"):
            status, _, _ = await exchange(front.port, request("POST", f"/async-function/{name}"))
            assert status == 400, name
        status, _, _ = await exchange(front.port, request("POST", "/async-function/missing"))
        assert status == 404
    assert await stored_messages(queue.js, queue.stream) == []


async def test_a_worker_process_survives_a_4kb_function_name_and_keeps_serving(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("echo")
    worker = await FerryProcess("queue-worker", queue.env()).start()
    try:
        await queue.publish_raw(json.dumps({"Function": "x" * 4096}).encode())
        await queue.publish("echo", b"served after it")
        await eventually(lambda: gateway.calls_to("echo"), what="the valid call")
        await eventually(lambda: queue.dead_letters(), what="the dead letter")
        assert worker.running
        assert await worker.stop() == 0, worker.output()
    finally:
        await worker.close()
    assert await queue.pending() == 0

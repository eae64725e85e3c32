"""Reliability round 3, minor items: a caller-chosen `X-Call-Id` must be one the call routes can
address and short enough to log. The front door (its lean path and aiohttp's) and `ferry
publish` refuse the same ids; ids other publishers queued, of any length, are cut in log lines
and in `ferry dead-letters list`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from yarl import URL

from gateway.service import GatewayService
from tests.support.cli import ferry
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import Call, FakeGateway
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest
from tests.support.wire import exchange

REFUSED = ["a/b", "x" * 129, "café", "a b", "50%", "a?b", "..", "id#1"]
ACCEPTED = [
    str(uuid.uuid4()),  # what OpenFaaS makes
    "orders-0-17",  # the Kafka connector's topic-partition-offset
    "tick:1765000000000",  # the cron connector's function:unix_ms
    "a.b_c~d@e+f=g",
    "o" * 128,
]


@pytest.fixture
async def front_door(
    tmp_path: Path, queue: QueueUnderTest, gateway: FakeGateway
) -> AsyncIterator[GatewayService]:
    path = write_functions(tmp_path / "f.yml", {"echo": {"url": f"{gateway.url}/function/echo"}})
    async with running_gateway(gateway_env(queue, functions_file=str(path))) as service:
        yield service


def lean(call_id: str) -> bytes:
    """A call the lean listener serves itself (one that is not ASCII goes to aiohttp)."""
    head = f"POST /async-function/echo HTTP/1.1\r\nHost: a\r\nX-Call-Id: {call_id}\r\n"
    return (head + "Content-Length: 1\r\n\r\nx").encode()


def by_aiohttp(call_id: str) -> bytes:
    """The same call with a chunked body, which the lean listener hands to aiohttp."""
    head = f"POST /async-function/echo HTTP/1.1\r\nHost: a\r\nX-Call-Id: {call_id}\r\n"
    return (head + "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n").encode()


@pytest.mark.parametrize("framed", [lean, by_aiohttp])
async def test_only_ids_the_call_routes_can_address_are_taken_on_either_path(
    front_door: GatewayService, queue: QueueUnderTest, framed: Callable[[str], bytes]
) -> None:
    port = URL(front_door.url).port or 0
    for call_id in REFUSED:
        status, _, body = await exchange(port, framed(call_id))
        assert status == 400, call_id
        assert b"X-Call-Id" in body
        assert len(body) < 400  # the reason, never the whole id
    for call_id in ACCEPTED:
        status, headers, _ = await exchange(port, framed(call_id))
        assert (status, headers["x-call-id"]) == (202, call_id)
    assert await queue.stored() == len(ACCEPTED)


@pytest.mark.parametrize("call_id", ["a/b", "x" * 129])
async def test_ferry_publish_refuses_what_the_front_door_refuses(
    queue: QueueUnderTest, call_id: str
) -> None:
    env = {"nats_url": queue.nats_url, "nats_stream": queue.stream}
    result = await ferry("publish", "echo", "-H", f"X-Call-Id: {call_id}", env=env)
    assert result.status == 2
    (line,) = result.stderr.strip().splitlines()
    assert "X-Call-Id" in line and len(line) < 400
    assert await queue.stored() == 0


async def _refuse(call: Call) -> web.Response:
    return web.Response(status=400, text="no")


async def test_a_huge_id_from_another_publisher_is_cut_in_logs_and_listings(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("broken", _refuse)
    call_id = "k" * 20_000  # JetStream refuses headers over 64 KiB (Nats-Msg-Id is the id)
    await queue.publish("broken", b"x", headers=[("X-Call-Id", call_id)])
    worker = await FerryProcess("queue-worker", queue.env()).start()
    try:
        await eventually(lambda: queue.dead_letters(), what="the dead letter")
        assert await worker.stop() == 0
        output = worker.output()
    finally:
        await worker.close()
    assert "k" * 128 + "…" in output
    assert "k" * 129 not in output
    env = {"nats_url": queue.nats_url, "nats_stream": queue.stream}
    listed = await ferry(
        "dead-letters", "list", env={**env, "dead_letter_stream": queue.dead_stream}
    )
    assert listed.status == 0, listed.stderr
    assert "k" * 128 + "…" in listed.stdout
    assert max(len(line) for line in listed.stdout.splitlines()) < 400

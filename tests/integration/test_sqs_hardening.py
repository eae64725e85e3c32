"""The SQS connector against oversized dead letters and header text, on moto with a real
connector process."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.support.http import FakeGateway
from tests.support.moto import MotoServer, Queues
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.sqs import start_connector

pytestmark = pytest.mark.slow

SMALL_LIMIT = 256 * 1024


@pytest.fixture
async def queues(moto_server: MotoServer) -> AsyncIterator[Queues]:
    async with moto_server.sqs() as client:
        yield Queues(client, "sqsh")


async def _small_queue(queues: Queues, name: str) -> str:
    response = await queues.client.create_queue(
        QueueName=f"{queues.tag}-{name}", Attributes={"MaximumMessageSize": str(SMALL_LIMIT)}
    )
    return str(response["QueueUrl"])


def _topic(url: str) -> str:
    return url.rsplit("/", 1)[-1]


async def test_a_body_too_large_for_the_dead_letter_queue_is_still_recorded_as_dead(
    procs: list[FerryProcess], moto_server: MotoServer, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("large")
    dead = await _small_queue(queues, "large-dead")
    gateway.subscribe("fn", _topic(url))
    gateway.function("fn", lambda call: web.Response(status=400, text="no"))
    message_id = await queues.send(url, "x" * (300 * 1024), colour="red")
    proc = await start_connector(procs, moto_server, gateway, url, dead_letter_queue_url=dead)
    found = await eventually(lambda: queues.peek(dead), 30, what="a dead letter")
    attributes = {k: v["StringValue"] for k, v in found[0]["MessageAttributes"].items()}
    assert "307200 bytes" in attributes["Ferry-Body-Omitted"]
    assert attributes["Ferry-Source-Message-Id"] == message_id
    assert attributes["Ferry-Source-Queue"] == url
    assert attributes["Ferry-Function"] == "fn.openfaas-fn"
    assert len(found[0]["Body"]) < 1024
    await eventually(lambda: _depth_is(queues, url, 0), 30, what="the original deleted")
    assert len(gateway.calls_to("fn")) == 1
    assert await proc.stop() == 0, proc.output()


async def test_a_copy_near_the_limit_keeps_its_body_and_gives_up_the_attributes_first(
    procs: list[FerryProcess], moto_server: MotoServer, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("near")
    dead = await _small_queue(queues, "near-dead")
    gateway.subscribe("fn", _topic(url))
    gateway.function("fn", lambda call: web.Response(status=400, text="no"))
    body = "y" * (SMALL_LIMIT - 2048)
    await queues.send(url, body, big="z" * 4096)
    proc = await start_connector(procs, moto_server, gateway, url, dead_letter_queue_url=dead)
    found = await eventually(lambda: queues.peek(dead), 30, what="a dead letter")
    assert found[0]["Body"] == body
    assert "big" not in found[0]["MessageAttributes"]
    assert "Ferry-Body-Omitted" not in found[0]["MessageAttributes"]
    assert await proc.stop() == 0, proc.output()


async def _depth_is(queues: Queues, url: str, depth: int) -> bool:
    return await queues.depth(url) == depth


async def test_string_attributes_reach_the_function_as_the_same_utf8_bytes(
    procs: list[FerryProcess], moto_server: MotoServer, queues: Queues, gateway: FakeGateway
) -> None:
    url = await queues.create("text")
    gateway.subscribe("fn", _topic(url))
    gateway.function("fn")
    await queues.send(url, "alone", word="café")
    await queues.send(url, "beside", word="café", lang="日本")
    await queues.send(url, "lines", note="two\nlines")
    proc = await start_connector(procs, moto_server, gateway, url)
    await eventually(lambda: len(gateway.calls_to("fn")) == 3, 30, what="three calls")
    calls = {c.body: c.headers for c in gateway.calls_to("fn")}
    for body in (b"alone", b"beside"):
        word = calls[body]["X-SQS-Attr-word"]
        assert word.encode("utf-8", "surrogateescape") == "café".encode()
        assert "X-SQS-Attr-word-Enc" not in calls[body]
    assert calls[b"beside"]["X-SQS-Attr-lang"].encode("utf-8", "surrogateescape") == (
        "日本".encode()
    )
    assert calls[b"lines"]["X-SQS-Attr-note-Enc"] == "b64"
    assert base64.b64decode(calls[b"lines"]["X-SQS-Attr-note"]) == b"two\nlines"
    assert await proc.stop() == 0, proc.output()


async def test_two_queues_sharing_one_slot_never_take_more_slots_than_the_pool_has(
    moto_server: MotoServer, queues: Queues, gateway: FakeGateway, procs: list[FerryProcess]
) -> None:
    # both queues' receive loops wait on the same full pool; when the slot frees, both wake,
    # and each must read the free count again rather than trust what its wait saw
    first, second = await queues.create("share-a"), await queues.create("share-b")
    gateway.function("a")
    gateway.subscribe("a", _topic(first))
    gateway.function("b")
    gateway.subscribe("b", _topic(second))
    for i in range(15):
        await queues.send(first, f"a-{i}")
        await queues.send(second, f"b-{i}")
    proc = await start_connector(
        procs, moto_server, gateway, f"{first},{second}", max_inflight="1", max_messages="1"
    )
    await eventually(lambda: len(gateway.calls) >= 30, 60, what="every message")
    assert await proc.stop() == 0, proc.output()
    assert "Traceback" not in proc.output(), proc.output()
    assert sorted(c.body.decode() for c in gateway.calls) == sorted(
        [f"a-{i}" for i in range(15)] + [f"b-{i}" for i in range(15)]
    )

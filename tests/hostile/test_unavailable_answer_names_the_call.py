"""Finding 6: a 503 after a publish timeout carries the call's X-Call-Id, and a client that
retries with it runs the call once (a paused nats-server may still store the first try)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest

from tests.support.brokers import NatsServer
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest
from tests.support.streams import stored_messages
from tests.support.wire import exchange, request


@pytest.fixture
def own_nats() -> Iterator[NatsServer]:
    """A nats-server of this test's own, so pausing it disturbs no other test."""
    server = NatsServer().start()
    try:
        yield server
    finally:
        server.resume()
        server.cleanup()


@pytest.fixture
async def paused_queue(own_nats: NatsServer) -> AsyncIterator[QueueUnderTest]:
    nc = await nats.connect(own_nats.url)
    queue = await QueueUnderTest(nc, own_nats.url, "http://127.0.0.1:9").setup()
    yield queue
    await nc.close()


async def test_a_503_names_the_call_and_a_retry_with_that_id_is_stored_once(
    own_nats: NatsServer, paused_queue: QueueUnderTest, tmp_path: Path
) -> None:
    queue = paused_queue
    functions = write_functions(tmp_path / "f.yml", {"echo": {"url": "http://127.0.0.1:9"}})
    env = gateway_env(queue, functions_file=str(functions), publish_timeout="500ms")
    async with running_gateway(env) as front:
        call = request("POST", "/async-function/echo", body=b"once")
        own_nats.pause()
        try:
            status, headers, text = await exchange(front.port, call)
        finally:
            own_nats.resume()
        assert status == 503
        call_id = headers["x-call-id"]
        assert call_id and b"may not have been queued" in text and call_id.encode() in text
        retry = request("POST", "/async-function/echo", f"X-Call-Id: {call_id}", body=b"once")
        status, headers, _ = await eventually(
            lambda: _accepted(front.port, retry), what="the retry accepted"
        )
        assert headers["x-call-id"] == call_id
    stored = await stored_messages(queue.js, queue.stream)
    assert [m.headers.get("Nats-Msg-Id") for m in stored] == [call_id]


async def _accepted(port: int, data: bytes) -> tuple[int, dict[str, str], bytes] | None:
    answer = await exchange(port, data)
    return answer if answer[0] == 202 else None

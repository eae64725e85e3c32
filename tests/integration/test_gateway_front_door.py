"""The front door answers 202 only for stored calls, in the message shape Go gateways write."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nats
import pytest

from asyncq import codec
from asyncq.layout import queue_subject
from tests.support.brokers import NatsServer
from tests.support.compat import COMPAT
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import CallbackReceiver, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest
from tests.support.streams import stored_messages


@pytest.fixture
def functions_file(tmp_path: Path, gateway: FakeGateway) -> Path:
    return write_functions(
        tmp_path / "functions.yml",
        {
            "echo": {"url": f"{gateway.url}/function/echo"},
            "slow": {
                "url": f"{gateway.url}/function/slow",
                "annotations": {"com.openfaas.queue": "slow-lane"},
            },
        },
    )


async def post(
    url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> aiohttp.ClientResponse:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        await response.read()
        return response


async def post_chunked(url: str, chunks: int, size: int) -> int:
    """POST without Content-Length (chunked), so the size is known only while reading."""

    async def body() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            yield b"y" * size

    async with aiohttp.ClientSession() as session, session.post(url, data=body()) as response:
        return response.status


async def test_accepted_call_is_stored_before_the_202_with_call_id_and_start_time(
    queue: QueueUnderTest, functions_file: Path
) -> None:
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        response = await post(f"{gw.url}/async-function/echo", b"hello")
        assert response.status == 202
        call_id = response.headers["X-Call-Id"]
        assert len(call_id) == 36
        assert response.headers["X-Start-Time"].isdigit()
        (stored,) = await stored_messages(queue.js, queue.stream)
    request = codec.decode(stored.data)
    assert stored.subject == queue.stream
    assert stored.headers["Nats-Msg-Id"] == call_id
    assert request.call_id == call_id
    assert request.start_time == response.headers["X-Start-Time"]
    assert (request.function, request.body, request.method) == ("echo", b"hello", "POST")


async def test_accepted_and_duplicate_calls_are_counted_from_zero(
    queue: QueueUnderTest, functions_file: Path
) -> None:
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:

        def counted(outcome: str) -> float | None:
            name = "gateway_async_calls_total"
            return gw.registry.get_sample_value(name, {"outcome": outcome})

        assert (counted("accepted"), counted("duplicate")) == (0, 0)  # before any call
        headers = {"X-Call-Id": "6d3f1c2a-0000-4000-8000-000000000001"}
        for _ in range(2):
            assert (await post(f"{gw.url}/async-function/echo", b"x", headers)).status == 202
        assert (counted("accepted"), counted("duplicate")) == (1, 1)


async def test_message_matches_the_go_gateway_field_by_field(
    queue: QueueUnderTest, functions_file: Path
) -> None:
    expected = json.loads((COMPAT / "queue-request-full.json").read_text())
    body = codec.decode(json.dumps(expected).encode()).body
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        headers = [(k, v) for k, values in expected["Header"].items() for v in values]
        headers = [(k, v) for k, v in headers if k != "X-Start-Time"]
        headers.append(("Host", expected["Host"]))
        async with (
            aiohttp.ClientSession(skip_auto_headers=("Accept", "Accept-Encoding")) as session,
            session.post(
                f"{gw.url}/async-function/echo.openfaas-fn/sub/path?{expected['QueryString']}",
                data=body,
                headers=headers,
            ) as response,
        ):
            assert response.status == 202
        (stored,) = await stored_messages(queue.js, queue.stream)
    written = json.loads(stored.data)
    assert set(written) == set(expected)
    start_time = written["Header"].pop("X-Start-Time")
    assert start_time == [response.headers["X-Start-Time"]]
    expected["Header"].pop("X-Start-Time")
    for key in expected:
        assert written[key] == expected[key], key
    decoded = codec.decode(stored.data)
    assert decoded.callback == expected["Header"]["X-Callback-Url"][0]
    assert decoded.body == body


async def test_named_queue_annotation_puts_the_call_on_the_queue_subject(
    queue: QueueUnderTest, functions_file: Path
) -> None:
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        assert (await post(f"{gw.url}/async-function/slow")).status == 202
        (stored,) = await stored_messages(queue.js, queue.stream)
    assert stored.subject == queue_subject(queue.stream, "slow-lane")
    assert codec.decode(stored.data).queue_name == "slow-lane"


async def test_unknown_function_is_404_and_nothing_is_queued(
    queue: QueueUnderTest, functions_file: Path
) -> None:
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        response = await post(f"{gw.url}/async-function/nope", b"x")
        assert response.status == 404
        assert await queue.stored() == 0


async def test_function_added_to_the_file_is_served_without_a_restart(
    queue: QueueUnderTest, functions_file: Path, gateway: FakeGateway
) -> None:
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        assert (await post(f"{gw.url}/async-function/late")).status == 404
        write_functions(functions_file, {"late": {"url": f"{gateway.url}/function/late"}})

        async def accepted() -> bool:
            return (await post(f"{gw.url}/async-function/late")).status == 202

        await eventually(accepted, timeout=10, what="late function accepted")


@pytest.mark.parametrize(
    "callback", ["/relative/path", "ftp://example.com/x", "http://", "not a url"]
)
async def test_callback_url_that_is_not_absolute_http_is_400(
    queue: QueueUnderTest, functions_file: Path, callback: str
) -> None:
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        response = await post(f"{gw.url}/async-function/echo", headers={"X-Callback-Url": callback})
        assert response.status == 400
        assert await queue.stored() == 0


async def test_callback_url_the_allow_list_refuses_is_400_and_one_it_lists_is_202(
    queue: QueueUnderTest, functions_file: Path
) -> None:
    env = gateway_env(
        queue,
        functions_file=str(functions_file),
        callback_allow_private="false",
        callback_allowed_hosts="10.1.2.0/24",
    )
    async with running_gateway(env) as gw:
        refused = await post(
            f"{gw.url}/async-function/echo", headers={"X-Callback-Url": "http://127.0.0.1:9/cb"}
        )
        listed = await post(
            f"{gw.url}/async-function/echo", headers={"X-Callback-Url": "http://10.1.2.3/cb"}
        )
        assert (refused.status, listed.status) == (400, 202)
        assert await queue.stored() == 1


async def test_body_above_max_body_bytes_is_413_and_at_the_limit_is_accepted(
    queue: QueueUnderTest, functions_file: Path
) -> None:
    env = gateway_env(queue, functions_file=str(functions_file), max_body_bytes="1024")
    async with running_gateway(env) as gw:
        assert (await post(f"{gw.url}/async-function/echo", b"x" * 1025)).status == 413
        assert (await post_chunked(f"{gw.url}/async-function/echo", 11, 100)) == 413
        assert (await post(f"{gw.url}/async-function/echo", b"x" * 1024)).status == 202
        (stored,) = await stored_messages(queue.js, queue.stream)
    assert codec.decode(stored.data).body == b"x" * 1024


async def test_same_call_id_posted_twice_is_invoked_once(
    queue: QueueUnderTest, functions_file: Path, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    gateway.function("echo")
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        headers = {"X-Call-Id": "call-twice-1", "X-Callback-Url": receiver.url()}
        first = await post(f"{gw.url}/async-function/echo", b"a", headers)
        second = await post(f"{gw.url}/async-function/echo", b"a", headers)
    assert (first.status, second.status) == (202, 202)
    assert first.headers["X-Call-Id"] == second.headers["X-Call-Id"] == "call-twice-1"
    assert await queue.stored() == 1
    async with queue.worker():
        await receiver.wait_for(1)

        async def drained() -> bool:
            return await queue.stored() == 0

        await eventually(drained, what="queue empty")
    assert len(gateway.calls_to("echo")) == 1
    assert len(receiver.received) == 1


async def test_nats_down_is_503_and_no_202_is_ever_given_for_an_unstored_call(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    server = NatsServer().start()
    nc = None
    try:
        nc = await nats.connect(server.url)
        queue = await QueueUnderTest(nc, server.url, gateway.url).setup()
        await nc.close()
        functions = write_functions(tmp_path / "f.yml", {"echo": {"url": gateway.url}})
        env = gateway_env(queue, functions_file=str(functions), publish_timeout="1s")
        accepted: list[str] = []
        statuses: list[int] = []
        async with running_gateway(env) as gw, aiohttp.ClientSession() as session:

            async def caller() -> None:
                for _ in range(40):
                    async with session.post(f"{gw.url}/async-function/echo", data=b"x") as r:
                        statuses.append(r.status)
                        if r.status == 202:
                            accepted.append(r.headers["X-Call-Id"])
                        else:
                            assert r.status == 503
                            assert "NATS" in await r.text()
                    await asyncio.sleep(0.01)

            callers = [asyncio.create_task(caller()) for _ in range(4)]
            await eventually(lambda: len(accepted) >= 20, timeout=10, what="some accepted")
            await asyncio.to_thread(server.stop)
            await asyncio.gather(*callers)
            assert statuses[-1] == 503
            response = await post(f"{gw.url}/async-function/echo")
            assert response.status == 503
            server.start()
            await eventually(lambda: gw.ready() or None, timeout=15, what="gateway reconnected")

            async def accepted_again() -> bool:
                return (await post(f"{gw.url}/async-function/echo")).status == 202

            await eventually(accepted_again, timeout=15, what="202 after NATS is back")
        nc = await nats.connect(server.url)
        stored = {
            codec.decode(m.data).call_id
            for m in await stored_messages(nc.jetstream(), queue.stream)
        }
        assert set(accepted) <= stored
        assert 503 in statuses
    finally:
        if nc is not None:
            await nc.close()
        server.cleanup()


async def test_a_compressed_body_is_queued_as_sent_with_its_encoding(
    queue: QueueUnderTest, functions_file: Path
) -> None:
    """Like the Go gateway, the front door stores the bytes it was sent: a gzip body stays gzip,
    so the function later gets the same bytes with the same Content-Encoding."""
    packed = gzip.compress(b"a large request, compressed by the caller")
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        response = await post(
            f"{gw.url}/async-function/echo", packed, headers={"Content-Encoding": "gzip"}
        )
        assert response.status == 202
        (stored,) = await stored_messages(queue.js, queue.stream)
    request = codec.decode(stored.data)
    assert request.body == packed
    assert request.first_header("Content-Encoding") == "gzip"

"""A function answering hundreds of megabytes cannot take a worker's memory: past
`max_response_bytes` the answer is not read further, the call fails for good with the reason
(dead letter and callback say so) and the worker goes on with other calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from asyncq.layout import DEAD_REASON
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import CallbackReceiver
from tests.support.http1 import serve
from tests.support.large import hostile_functions
from tests.support.memory import peak_rss_kib
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest

RSS_LIMIT_KIB = 150 * 1024
LIMIT = 1024 * 1024


@pytest.fixture
async def hostile_gateway() -> AsyncIterator[str]:
    runner, base = await serve(hostile_functions)
    yield base
    await runner.cleanup()


async def test_a_500_mib_answer_is_a_final_failure_with_the_reason_and_memory_stays_bounded(
    queue: QueueUnderTest, receiver: CallbackReceiver, hostile_gateway: str
) -> None:
    worker = await queue.spawn_worker(gateway_url=hostile_gateway, max_inflight="4")
    try:
        for name in ("huge-chunked", "huge-length"):
            await queue.publish(name, b"go", callback_url=receiver.url(f"/{name}"))
        await eventually(lambda: len(receiver.received) >= 2, 60, what="two callbacks")
        await queue.publish("echo", b"still here", callback_url=receiver.url("/echo"))
        received = await receiver.wait_for(3, 30)
        peak = peak_rss_kib(worker.pid)
    finally:
        worker.terminate()
        await worker.wait()
    by_path = {r.path: r for r in received}
    for name in ("huge-chunked", "huge-length"):
        failed = by_path[f"/{name}"]
        assert "response larger than max_response_bytes" in failed.headers["X-Ferry-Error"]
        assert failed.headers["X-Retry"] == "0"  # final at the first attempt: not retried
        assert failed.body == b""
    assert by_path["/echo"].body == b"still here"
    assert by_path["/echo"].headers["X-Function-Status"] == "200"
    letters = await queue.dead_letters()
    assert len(letters) == 2
    for letter in letters:
        assert "response larger than max_response_bytes" in letter.headers[DEAD_REASON]
    print(f"queue worker peak RSS: {peak // 1024} MiB")
    assert peak < RSS_LIMIT_KIB, f"peak RSS {peak // 1024} MiB"


async def test_the_front_door_proxy_refuses_or_cuts_off_an_answer_past_max_response_bytes(
    queue: QueueUnderTest, hostile_gateway: str, tmp_path: Path
) -> None:
    names = ("huge-length", "huge-chunked", "echo")
    listed = {name: {"url": f"{hostile_gateway}/function/{name}"} for name in names}
    functions_file = write_functions(tmp_path / "functions.yml", listed)
    env = gateway_env(queue, functions_file=str(functions_file), max_response_bytes=str(LIMIT))
    async with running_gateway(env) as gw, aiohttp.ClientSession() as session:
        async with session.get(f"{gw.url}/function/huge-length") as declared:
            assert declared.status == 502
            assert "response larger than max_response_bytes" in await declared.text()
        # the lean path reads an answer whole before it answers: past the limit, a 502
        async with session.get(f"{gw.url}/function/huge-chunked") as lean:
            assert lean.status == 502
            assert "response larger than max_response_bytes" in await lean.text()
        async with session.post(f"{gw.url}/function/echo", data=b"fine") as small:
            assert await small.read() == b"fine"


async def test_the_aiohttp_proxy_path_refuses_a_declared_and_cuts_off_a_streamed_large_answer(
    queue: QueueUnderTest, hostile_gateway: str, tmp_path: Path
) -> None:
    """The lean path never serves OPTIONS nor a request with a chunked body: aiohttp's
    streaming proxy does, and holds the same bound."""
    names = ("huge-length", "huge-chunked")
    listed = {name: {"url": f"{hostile_gateway}/function/{name}"} for name in names}
    functions_file = write_functions(tmp_path / "functions.yml", listed)
    env = gateway_env(queue, functions_file=str(functions_file), max_response_bytes=str(LIMIT))
    async with running_gateway(env) as gw, aiohttp.ClientSession() as session:
        # a declared length over the limit: refused before a byte of it is read
        async with session.options(f"{gw.url}/function/huge-length") as declared:
            assert declared.status == 502
            assert "response larger than max_response_bytes" in await declared.text()
        chunked_body = _pieces(b"go")  # sent chunked, which the lean path hands to aiohttp
        async with session.post(f"{gw.url}/function/huge-length", data=chunked_body) as posted:
            assert posted.status == 502
            assert "response larger than max_response_bytes" in await posted.text()
        # no declared length: streamed until the limit, then the connection is cut
        async with session.options(f"{gw.url}/function/huge-chunked") as streamed:
            assert streamed.status == 200
            got = 0
            with pytest.raises(aiohttp.ClientPayloadError):
                async for piece in streamed.content.iter_any():
                    got += len(piece)
            assert got <= LIMIT


async def _pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk

"""A queue worker calling through `ferry gateway` knows the 502s the gateway makes itself.

An answer over the gateway's `max_response_bytes` is final at the first attempt (the same call
gives the same answer), with its reason in the dead letter and the callback's `X-Ferry-Error`;
the gateway's `upstream_timeout` is a timeout, so `retry_on_timeout` decides (a slow call is
not run again by default). Both of the gateway's proxy paths: the lean one (POST) and aiohttp's
(OPTIONS is handed off to it).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from asyncq.layout import DEAD_REASON
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import CallbackReceiver
from tests.support.http1 import serve
from tests.support.ledger import LedgerUnderTest
from tests.support.queue import QueueUnderTest

BIG = 17 * 1024 * 1024


class Functions:
    """`big` (17 MB, declared), `endless` (chunked, never ends), `slow` (answers after 3 s);
    counts the calls each gets."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.path.rsplit("/", 1)[-1]
        self.calls[name] += 1
        if name == "slow":
            await asyncio.sleep(3)
            return web.Response(text="late")
        response = web.StreamResponse()
        if name == "big":
            response.content_length = BIG
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        block = b"x" * 65536
        try:
            for _ in range(BIG // len(block) * (1 if name == "big" else 100)):
                await response.write(block)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the gateway hung up, as it should
        return response


@pytest.fixture
async def functions() -> AsyncIterator[tuple[Functions, str]]:
    found = Functions()
    runner, base = await serve(found.handle)
    yield found, base
    await runner.cleanup()


@pytest.mark.parametrize("method", ["POST", "OPTIONS"])
async def test_an_answer_too_large_for_the_gateway_is_final_and_a_gateway_timeout_is_a_timeout(
    method: str,
    queue: QueueUnderTest,
    receiver: CallbackReceiver,
    functions: tuple[Functions, str],
    tmp_path: Path,
) -> None:
    found, base = functions
    names = ["big", "slow"] + (["endless"] if method == "POST" else [])
    listed = {name: {"url": f"{base}/fn/{name}"} for name in names}
    env = gateway_env(
        queue,
        functions_file=str(write_functions(tmp_path / "functions.yaml", listed)),
        max_response_bytes="1048576",
        upstream_timeout="1s",
    )
    ledger = await LedgerUnderTest(queue.js).setup()
    async with running_gateway(env) as gateway:
        worker_env = {"gateway_url": gateway.url, "upstream_timeout": "20s", **ledger.env()}
        async with queue.worker(**worker_env, max_retry_attempts="3"):
            calls = {}
            for name in names:
                back = receiver.url(f"/{name}")
                request = await queue.publish(name, b"go", method=method, callback_url=back)
                calls[name] = request.call_id
            received = await receiver.wait_for(len(names), 60)
            big = await ledger.wait_for_state(calls["big"], "failed")
    await ledger.close()
    assert big.status == 502 and big.error is not None
    assert "larger than its max_response_bytes" in big.error  # the ledger says why
    assert found.calls == dict.fromkeys(names, 1)  # each invoked once: the outcome was final
    by_name = {r.path.rsplit("/", 1)[-1]: r for r in received}
    for name in set(names) - {"slow"}:
        callback = by_name[name]
        assert callback.headers["X-Function-Status"] == "502"
        assert "larger than its max_response_bytes" in callback.headers["X-Ferry-Error"]
        assert callback.body == b""
    assert by_name["slow"].headers["X-Function-Status"] == "502"
    reasons = {
        letter.headers["Ferry-Function"]: letter.headers[DEAD_REASON]
        for letter in await queue.dead_letters()
    }
    assert "larger than its max_response_bytes (502) (not retried)" in reasons["big"]
    assert "the gateway's upstream_timeout ran out" in reasons["slow"]
    assert "retry_on_timeout=false" in reasons["slow"]


async def test_with_retry_on_timeout_a_gateway_timeout_is_invoked_again(
    queue: QueueUnderTest,
    receiver: CallbackReceiver,
    functions: tuple[Functions, str],
    tmp_path: Path,
) -> None:
    found, base = functions
    listed = {"slow": {"url": f"{base}/fn/slow"}}
    env = gateway_env(
        queue,
        functions_file=str(write_functions(tmp_path / "functions.yaml", listed)),
        upstream_timeout="500ms",
    )
    async with running_gateway(env) as gateway:
        worker_env = {"gateway_url": gateway.url, "retry_on_timeout": "true"}
        async with queue.worker(**worker_env, max_retry_attempts="2"):
            await queue.publish("slow", b"go", callback_url=receiver.url("/slow"))
            (callback,) = await receiver.wait_for(1, 60)
    assert found.calls["slow"] == 2
    assert callback.headers["X-Function-Status"] == "502"
    (letter,) = await queue.dead_letters()
    assert (
        "the gateway's upstream_timeout ran out (502) after 2 attempts"
        in (letter.headers[DEAD_REASON])
    )

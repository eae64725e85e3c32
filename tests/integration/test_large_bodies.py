"""Calls too large for one NATS message go through the object store (a claim check): the
function gets the exact bytes, streamed; the object goes once the call is done, stays with a
dead letter until it is purged, and survives a worker killed half way."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from asyncq.codec import encode
from asyncq.dead_letter_store import DeadLetterStore
from asyncq.large_bodies import BODY_OBJECT, BodyStore
from asyncq.publisher import Publisher, build_request
from tests.support.brokers import NatsServer
from tests.support.cli import ferry
from tests.support.front_door import (
    gateway_env,
    gateway_process,
    running_gateway,
    write_functions,
)
from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.http1 import serve
from tests.support.large import live_objects, no_objects_left
from tests.support.memory import peak_rss_kib
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest, queue_on

MiB = 1024 * 1024


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bucket() -> str:
    return f"bodies-{uuid.uuid4().hex[:8]}"


def worker_env(bucket: str, **extra: str) -> dict[str, str]:
    return {"large_body_bucket": bucket, "max_response_bytes": str(64 * MiB), **extra}


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    """A body sent with Transfer-Encoding: chunked (which the lean path hands to aiohttp)."""
    for start in range(0, len(body), MiB):
        yield body[start : start + MiB]


@pytest.mark.parametrize(
    ("size", "path"),
    [(5 * MiB, "lean"), (20 * MiB, "lean"), (5 * MiB, "aiohttp")],
    ids=["5MiB-lean", "20MiB-lean", "5MiB-aiohttp"],
)
async def test_a_large_body_through_the_gateway_reaches_the_function_and_the_callback_whole(
    size: int,
    path: str,
    queue: QueueUnderTest,
    gateway: FakeGateway,
    receiver: CallbackReceiver,
    bucket: str,
    tmp_path: Path,
) -> None:
    gateway.function("echo")
    functions = write_functions(tmp_path / "f.yml", {"echo": {"url": gateway.url}})
    body = os.urandom(size)
    worker = await queue.spawn_worker(**worker_env(bucket))
    try:
        env = gateway_env(queue, functions_file=str(functions), large_body_bucket=bucket)
        async with gateway_process(env) as url, aiohttp.ClientSession() as session:
            async with session.post(
                f"{url}/async-function/echo",
                data=body if path == "lean" else chunked(body),
                headers={"X-Callback-Url": receiver.url()},
            ) as response:
                assert response.status == 202, await response.text()
            (callback,) = await receiver.wait_for(1, 60)
        (call,) = gateway.calls_to("echo")
        assert digest(call.body) == digest(body)
        assert call.headers["Content-Length"] == str(size)
        assert digest(callback.body) == digest(body)
        assert callback.headers["X-Function-Status"] == "200"
        await no_objects_left(queue, bucket)
    finally:
        await _stop(worker)
        await worker.wait()


async def test_a_large_body_through_ferry_publish_reaches_the_function_whole(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    receiver: CallbackReceiver,
    bucket: str,
    tmp_path: Path,
) -> None:
    gateway.function("echo")
    body = os.urandom(20 * MiB)
    (tmp_path / "body").write_bytes(body)
    published = await ferry(
        "publish",
        "echo",
        "--data",
        f"@{tmp_path / 'body'}",
        "--callback",
        receiver.url(),
        env={**queue.env(), "large_body_bucket": bucket},
    )
    assert published.status == 0, published.stderr
    stored = await queue.js.get_msg(queue.stream, seq=1)
    assert BODY_OBJECT in (stored.headers or {})
    assert len(stored.data or b"") < 64 * 1024  # the message holds the call, not the body
    assert len(await live_objects(queue, bucket)) == 1
    async with queue.worker(**worker_env(bucket)):
        (callback,) = await receiver.wait_for(1, 60)
    (call,) = gateway.calls_to("echo")
    assert digest(call.body) == digest(callback.body) == digest(body)
    await no_objects_left(queue, bucket)


async def test_a_dead_letter_keeps_its_body_object_for_replay_and_purge_removes_it(
    queue: QueueUnderTest, gateway: FakeGateway, bucket: str
) -> None:
    failing = True

    async def fails_until_fixed(call: Call) -> web.Response:
        return web.Response(status=500 if failing else 200, text="answer")

    gateway.function("flaky", fails_until_fixed)
    body = os.urandom(3 * MiB)
    cli_env = {**queue.env(), "large_body_bucket": bucket}
    first = await ferry("publish", "flaky", "--data", "@-", env=cli_env, stdin=body)
    assert first.status == 0, first.stderr
    async with queue.worker(**worker_env(bucket, max_retry_attempts="2")):

        async def dead(count: int) -> bool:
            return len(await queue.dead_letters()) >= count

        await eventually(lambda: dead(1), 30, what="a dead letter")
        assert len(await live_objects(queue, bucket)) == 1  # kept with the dead letter

        failing = False
        replay = await ferry("dead-letters", "replay", env=cli_env)
        assert replay.status == 0, replay.stderr
        await eventually(lambda: len(gateway.calls_to("flaky")) == 3, 30, what="replayed call")
        assert digest(gateway.calls_to("flaky")[-1].body) == digest(body)
        await no_objects_left(queue, bucket)

        failing = True
        second = await ferry("publish", "flaky", "--data", "@-", env=cli_env, stdin=body)
        assert second.status == 0, second.stderr
        await eventually(lambda: dead(1), 30, what="a second dead letter")
        assert len(await live_objects(queue, bucket)) == 1
    purge = await ferry("dead-letters", "purge", env=cli_env)
    assert purge.status == 0, purge.stderr
    await no_objects_left(queue, bucket)


async def test_a_worker_killed_while_streaming_a_body_leaves_the_call_to_the_next(
    queue: QueueUnderTest, receiver: CallbackReceiver, bucket: str
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    digests: list[str] = []

    async def slow_reader(request: web.Request) -> web.Response:
        hashed = hashlib.sha256()
        async for piece in request.content.iter_chunked(64 * 1024):
            hashed.update(piece)
            started.set()
            await release.wait()  # the first worker dies while this call is half read
        digests.append(hashed.hexdigest())
        return web.Response(text="done")

    runner, functions_url = await serve(slow_reader)
    body = os.urandom(10 * MiB)
    try:
        cli_env = {**queue.env(), "large_body_bucket": bucket}
        published = await ferry(
            "publish", "slow", "--data", "@-", "--callback", receiver.url(), env=cli_env, stdin=body
        )
        assert published.status == 0, published.stderr
        env = worker_env(bucket, gateway_url=functions_url, ack_wait="2s")
        first = await queue.spawn_worker(**env)
        await asyncio.wait_for(started.wait(), 30)
        first.kill()
        await first.wait()
        release.set()
        second = await queue.spawn_worker(**env)
        try:
            (callback,) = await receiver.wait_for(1, 60)
        finally:
            second.terminate()
            await second.wait()
    finally:
        await runner.cleanup()
    assert callback.body == b"done"
    assert digest(body) in digests  # the redelivered call streamed the whole body
    await no_objects_left(queue, bucket)


async def test_a_body_over_max_body_bytes_is_413_and_nothing_is_stored(
    queue: QueueUnderTest, gateway: FakeGateway, bucket: str, tmp_path: Path
) -> None:
    gateway.function("echo")
    functions = write_functions(tmp_path / "f.yml", {"echo": {"url": gateway.url}})
    env = gateway_env(
        queue, functions_file=str(functions), large_body_bucket=bucket, max_body_bytes=str(4 * MiB)
    )
    async with (
        gateway_process(env) as url,
        aiohttp.ClientSession() as session,
        session.post(f"{url}/async-function/echo", data=os.urandom(4 * MiB + 1)) as response,
    ):
        assert response.status == 413
    assert await queue.stored() == 0
    assert await live_objects(queue, bucket) == []


async def test_a_900_kb_body_on_a_default_server_is_accepted_and_delivered(
    queue: QueueUnderTest, gateway: FakeGateway, bucket: str, tmp_path: Path
) -> None:
    gateway.function("echo")
    functions = write_functions(tmp_path / "f.yml", {"echo": {"url": gateway.url}})
    body = os.urandom(900 * 1000)
    env = gateway_env(queue, functions_file=str(functions), large_body_bucket=bucket)
    async with (
        gateway_process(env) as url,
        aiohttp.ClientSession() as session,
        session.post(f"{url}/async-function/echo", data=body) as response,
    ):
        assert response.status == 202, await response.text()
    async with queue.worker(**worker_env(bucket)):
        await eventually(lambda: len(gateway.calls_to("echo")) == 1, 30, what="the call")
    assert digest(gateway.calls_to("echo")[0].body) == digest(body)
    await no_objects_left(queue, bucket)


def configured_nats(path: Path, config: str) -> NatsServer:
    """A nats-server started with `config` as its configuration file."""
    path.write_text(config)
    return NatsServer(args=("-c", str(path))).start()


@pytest.fixture
def small_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A server that takes messages of 32 KiB at most."""
    server = configured_nats(tmp_path / "small.conf", "max_payload: 32768\n")
    yield server
    server.cleanup()


@pytest.fixture
def full_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A server whose JetStream has 8 MB of file storage."""
    server = configured_nats(tmp_path / "full.conf", "jetstream { max_file_store: 8MB }\n")
    yield server
    server.cleanup()


async def test_the_threshold_is_the_servers_own_max_payload_and_small_bodies_stay_inline(
    small_nats: NatsServer, gateway: FakeGateway, bucket: str, tmp_path: Path
) -> None:
    gateway.function("echo")
    functions = write_functions(tmp_path / "f.yml", {"echo": {"url": gateway.url}})
    async with queue_on(small_nats.url, gateway.url) as queue:
        env = gateway_env(queue, functions_file=str(functions), large_body_bucket=bucket)
        async with running_gateway(env) as gw, aiohttp.ClientSession() as session:
            for size in (1024, 100 * 1024):  # inline; too large for 32 KiB messages
                async with session.post(
                    f"{gw.url}/async-function/echo", data=os.urandom(size)
                ) as response:
                    assert response.status == 202, await response.text()
            async with session.post(
                f"{gw.url}/async-function/echo",
                data=b"x",
                headers={f"X-Big-{n}": "y" * 8000 for n in range(5)},
            ) as response:  # the call alone is larger than any message the server takes
                assert response.status == 413
                assert "max_payload" in await response.text()
        small, large = [await queue.js.get_msg(queue.stream, seq=seq) for seq in (1, 2)]
        assert await queue.stored() == 2
        assert BODY_OBJECT not in (small.headers or {})
        assert len(base64.b64decode(json.loads(small.data or b"")["Body"])) == 1024
        assert BODY_OBJECT in (large.headers or {})
        assert "Body" not in json.loads(large.data or b"")  # valid for Go: an empty body
        assert len(await live_objects(queue, bucket)) == 1


async def test_bodies_in_flight_are_streamed_not_held_by_the_worker(
    queue: QueueUnderTest, bucket: str
) -> None:
    """Eight 10 MiB calls in flight at once cost the worker far less than their 80 MiB."""
    in_flight, all_read = 8, asyncio.Event()
    read: list[str] = []

    async def reads_then_waits_for_all(request: web.Request) -> web.Response:
        hashed = hashlib.sha256()
        async for piece in request.content.iter_chunked(256 * 1024):
            hashed.update(piece)
        read.append(hashed.hexdigest())
        if len(read) == in_flight:
            all_read.set()
        await all_read.wait()
        return web.Response(text="ok")

    runner, functions_url = await serve(reads_then_waits_for_all)
    body = os.urandom(10 * MiB)
    bodies = BodyStore(queue.js, bucket)
    await bodies.ensure()
    publisher = Publisher(queue.js, queue.stream, bodies)
    try:
        for _ in range(in_flight):
            await publisher.enqueue(build_request("f", body=body), timeout=30)
        worker = await queue.spawn_worker(
            **worker_env(bucket, gateway_url=functions_url, max_inflight=str(in_flight))
        )
        try:
            await asyncio.wait_for(all_read.wait(), 60)
            await no_objects_left(queue, bucket)
            peak_mib = peak_rss_kib(worker.pid) // 1024
        finally:
            await _stop(worker)
    finally:
        await runner.cleanup()
    assert read == [digest(body)] * in_flight
    print(f"queue worker peak RSS with {in_flight} x 10 MiB in flight: {peak_mib} MiB")
    assert peak_mib < 100


async def test_a_body_the_object_store_has_no_room_for_is_503_as_retrying_can_help(
    full_nats: NatsServer, gateway: FakeGateway, bucket: str, tmp_path: Path
) -> None:
    gateway.function("echo")
    functions = write_functions(tmp_path / "f.yml", {"echo": {"url": gateway.url}})
    async with queue_on(full_nats.url, gateway.url) as queue:
        env = gateway_env(queue, functions_file=str(functions), large_body_bucket=bucket)
        async with running_gateway(env) as gw, aiohttp.ClientSession() as session:
            async with session.post(
                f"{gw.url}/async-function/echo", data=os.urandom(10 * MiB)
            ) as response:
                assert response.status == 503
                assert "insufficient resources" in await response.text()
            async with session.post(f"{gw.url}/async-function/echo", data=b"small") as response:
                assert response.status == 202
        assert await queue.stored() == 1
        assert await live_objects(queue, bucket) == []


async def test_a_message_too_large_to_dead_letter_whole_is_dead_lettered_without_it(
    small_nats: NatsServer, gateway: FakeGateway
) -> None:
    gateway.function("fails", lambda call: web.Response(status=500))
    limit = 32768
    body = b"x" * 24_000  # near the limit once JSON and base64 wrap it
    data = encode(build_request("fails", body=body))
    data = encode(build_request("fails", body=body + b"x" * ((limit - 200 - len(data)) * 3 // 4)))
    assert limit - 400 < len(data) <= limit - 100  # fits alone, not with the dead-letter headers
    async with queue_on(small_nats.url, gateway.url) as queue:
        await queue.publish_raw(data)
        async with queue.worker(max_retry_attempts="1"):
            dead = await eventually(queue.dead_letters, 30, what="the dead letter")
            await eventually(queue.drained, 30, what="acked, not handed back")
        assert len(gateway.calls_to("fails")) == 1
        store = DeadLetterStore(queue.js, queue.dead_stream, request_stream=queue.stream)
        assert await store.replay(await store.read()) == 0  # nothing there to run again
        assert len(await queue.dead_letters()) == 1
    (letter,) = dead
    assert letter.data == b""
    assert "was not kept" in letter.headers["Ferry-Body-Omitted"]
    assert letter.headers["Ferry-Dead-Reason"]


async def _stop(worker: asyncio.subprocess.Process) -> None:
    """Stop the worker; one that had already exited fails the test with what it logged."""
    if worker.returncode is None:
        worker.terminate()
        await asyncio.wait_for(worker.communicate(), 60)  # reads its log: a full pipe blocks it
        return
    _, logged = await worker.communicate()
    tail = logged.decode(errors="replace")[-4000:]
    raise AssertionError(f"the worker exited early ({worker.returncode}): {tail}")

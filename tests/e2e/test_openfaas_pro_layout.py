"""A real `ferry queue-worker` beside what OpenFaaS left on NATS: Pro's `OF_`-named stream, and
a consumer that already reads the queue's subject of a work-queue stream.

A worker must either run the queue's calls or exit non-zero with one line that names the cause;
never be ready and run nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api

from asyncq.codec import encode
from asyncq.publisher import build_request
from tests.support.brokers import NatsServer
from tests.support.cli import ferry
from tests.support.front_door import running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.ports import eventually
from tests.support.procs import FerryProcess, run_to_exit


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc: Client = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


def _env(nats_server: NatsServer, gateway: FakeGateway, stream: str, **more: str) -> dict[str, str]:
    return {
        "nats_url": nats_server.url,
        "nats_stream": stream,
        "dead_letter_stream": f"{stream}-dead",
        "gateway_url": gateway.url,
        "health_port": "0",
        "health_host": "127.0.0.1",
        "graceful_timeout": "5s",
        **more,
    }


async def _work_queue(js: JetStreamContext, name: str, subjects: list[str]) -> None:
    await js.add_stream(
        js_api.StreamConfig(
            name=name,
            subjects=subjects,
            retention=js_api.RetentionPolicy.WORK_QUEUE,
            storage=js_api.StorageType.FILE,
        )
    )


async def _pull_consumer(js: JetStreamContext, stream: str, name: str, subject: str) -> None:
    await js.add_consumer(
        stream,
        js_api.ConsumerConfig(
            durable_name=name,
            filter_subject=subject,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=61.0,
        ),
    )


def _error_lines(output: str) -> list[str]:
    """The lines a fatal start-up problem is told in (the rest is the log)."""
    return [line for line in output.splitlines() if line.startswith("ferry: ")]


async def _runs_a_call(
    env: dict[str, str], js: JetStreamContext, gateway: FakeGateway, subject: str, stream: str
) -> str:
    """Start the worker, publish one call on `subject`, see it run; the worker's output."""
    gateway.function("echo")
    proc = await FerryProcess("queue-worker", env).start()
    try:
        await eventually(lambda: "serving " in proc.output() or not proc.running, 20)
        assert proc.running, proc.output()
        request = build_request("echo", body=b"pro")
        await js.publish(subject, encode(request), stream=stream)
        await eventually(lambda: gateway.calls_to("echo"), 20, what="the call")
        assert gateway.calls_to("echo")[0].body == b"pro"
        assert await proc.stop() == 0, proc.output()
        return proc.output()
    finally:
        await proc.close()


async def test_the_pro_stream_named_after_the_queue_is_served_as_it_is(
    nats_server: NatsServer, gateway: FakeGateway, js: JetStreamContext
) -> None:
    queue = f"faas-request-{uuid.uuid4().hex[:8]}"
    await _work_queue(js, f"OF_{queue}", [queue])
    output = await _runs_a_call(
        _env(nats_server, gateway, queue), js, gateway, queue, f"OF_{queue}"
    )
    assert f"serving stream OF_{queue}, which already holds subject {queue}" in output
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.stream_info(queue)  # no second stream was made


async def test_a_stream_overlapping_ours_is_named_as_the_cause_not_the_replicas(
    nats_server: NatsServer, gateway: FakeGateway, js: JetStreamContext
) -> None:
    queue = f"faas-request-{uuid.uuid4().hex[:8]}"
    await _work_queue(js, f"other-{queue}", [f"{queue}.a"])  # not the queue's own subject
    code, output = await run_to_exit("queue-worker", _env(nats_server, gateway, queue))
    assert code == 2, output
    assert len(_error_lines(output)) == 1, output
    assert f"cannot create stream {queue}" in output
    assert "another stream already holds some of its subjects" in output
    assert "nats_stream_replicas" not in output


async def test_a_stream_that_keeps_every_message_is_not_replayed_by_a_new_consumer(
    nats_server: NatsServer, gateway: FakeGateway, js: JetStreamContext
) -> None:
    queue = f"faas-request-{uuid.uuid4().hex[:8]}"
    await js.add_stream(js_api.StreamConfig(name=f"OF_{queue}", subjects=[queue]))  # limits
    await js.publish(queue, encode(build_request("echo", body=b"ran long ago")))
    gateway.function("echo")
    code, output = await run_to_exit("queue-worker", _env(nats_server, gateway, queue))
    assert code == 2, output
    assert len(_error_lines(output)) == 1, output
    assert f"cannot create consumer faas-workers on stream OF_{queue}" in output
    assert "limits retention" in output
    assert gateway.calls_to("echo") == []


async def test_a_consumer_refused_by_a_work_queue_stream_stops_the_worker_with_one_line(
    nats_server: NatsServer, gateway: FakeGateway, js: JetStreamContext
) -> None:
    queue = f"faas-request-{uuid.uuid4().hex[:8]}"
    await _work_queue(js, queue, [queue, f"{queue}.*"])
    await _pull_consumer(js, queue, "faas-request-workers", queue)
    code, output = await run_to_exit("queue-worker", _env(nats_server, gateway, queue))
    assert code == 2, output
    assert len(_error_lines(output)) == 1, output
    assert f"cannot create consumer faas-workers on stream {queue}" in output
    assert "not unique" in output  # NATS's reason
    assert "consumer faas-request-workers already reads" in output
    assert "nats_durable" in output


async def test_a_shareable_consumer_named_by_nats_durable_is_bound_and_left_unchanged(
    nats_server: NatsServer, gateway: FakeGateway, js: JetStreamContext
) -> None:
    queue = f"faas-request-{uuid.uuid4().hex[:8]}"
    await _work_queue(js, queue, [queue, f"{queue}.*"])
    await _pull_consumer(js, queue, "faas-request-workers", queue)
    env = _env(nats_server, gateway, queue, nats_durable="faas-request-workers")
    output = await _runs_a_call(env, js, gateway, queue, queue)
    assert f"binding to consumer faas-request-workers on stream {queue} as it is" in output
    info = await js.consumer_info(queue, "faas-request-workers")
    assert info.config.ack_wait == 61.0  # not ferry's to change
    assert info.config.description is None


async def test_a_push_consumer_named_by_nats_durable_cannot_be_shared(
    nats_server: NatsServer, gateway: FakeGateway, js: JetStreamContext
) -> None:
    queue = f"faas-request-{uuid.uuid4().hex[:8]}"
    await _work_queue(js, queue, [queue, f"{queue}.*"])
    await js.add_consumer(
        queue,
        js_api.ConsumerConfig(
            durable_name="pushed",
            filter_subject=queue,
            deliver_subject=f"deliver.{queue}",
            ack_policy=js_api.AckPolicy.EXPLICIT,
        ),
    )
    env = _env(nats_server, gateway, queue, nats_durable="pushed")
    code, output = await run_to_exit("queue-worker", env)
    assert code == 2, output
    assert len(_error_lines(output)) == 1, output
    assert f"cannot use consumer pushed on stream {queue}: it is a push consumer" in output


async def test_the_front_door_and_ferry_publish_queue_into_the_pro_stream(
    nats_server: NatsServer, gateway: FakeGateway, js: JetStreamContext, tmp_path: Path
) -> None:
    queue = f"faas-request-{uuid.uuid4().hex[:8]}"
    await _work_queue(js, f"OF_{queue}", [queue])
    env = _env(nats_server, gateway, queue)
    published = await ferry("publish", "echo", "--data", "by-cli", env=env)
    assert published.status == 0, published.stderr
    listed = write_functions(tmp_path / "functions.yaml", {"echo": {"url": gateway.url}})
    front = {**env, "port": "0", "listen_host": "127.0.0.1", "functions_file": str(listed)}
    async with (
        running_gateway(front) as door,
        aiohttp.ClientSession() as http,
        http.post(f"{door.url}/async-function/echo", data=b"by-gateway") as answer,
    ):
        assert answer.status == 202, await answer.text()
    assert (await js.stream_info(f"OF_{queue}")).state.messages == 2
    gateway.function("echo")
    async with running_worker(env):
        await eventually(lambda: len(gateway.calls_to("echo")) == 2, 20, what="both calls")
    assert sorted(call.body for call in gateway.calls_to("echo")) == [b"by-cli", b"by-gateway"]


async def test_a_dead_letter_is_replayed_into_the_pro_stream(
    nats_server: NatsServer, gateway: FakeGateway, js: JetStreamContext
) -> None:
    queue = f"faas-request-{uuid.uuid4().hex[:8]}"
    await _work_queue(js, f"OF_{queue}", [queue])
    env = _env(nats_server, gateway, queue)
    assert (await ferry("publish", "gone", "--data", "x", env=env)).status == 0
    async with running_worker(env):  # no function `gone`: a 404, dead-lettered at once
        await eventually(lambda: _dead(js, f"{queue}-dead", 1), 20, what="the dead letter")
    replayed = await ferry("dead-letters", "replay", "--function", "gone", env=env)
    assert replayed.status == 0, replayed.stderr
    assert (await js.stream_info(f"OF_{queue}")).state.messages == 1
    assert await _dead(js, f"{queue}-dead", 0)


async def _dead(js: JetStreamContext, stream: str, count: int) -> bool:
    return (await js.stream_info(stream)).state.messages == count


@asynccontextmanager
async def running_worker(env: dict[str, str]) -> AsyncIterator[None]:
    proc = await FerryProcess("queue-worker", env).start()
    try:
        await eventually(lambda: "serving " in proc.output() or not proc.running, 20)
        assert proc.running, proc.output()
        yield
        assert await proc.stop() == 0, proc.output()
    finally:
        await proc.close()

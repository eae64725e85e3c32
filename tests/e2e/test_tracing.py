"""Tracing through real processes: `ferry gateway` and `ferry queue-worker` export their spans
over OTLP/HTTP to a receiver in the test, which decodes them with `opentelemetry-proto`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from nats.errors import Error as NatsError

from ledger.entries import DEFAULT_BUCKET
from ledger.store import LedgerStore
from tests.support.cli import ferry
from tests.support.front_door import gateway_env, gateway_process, write_functions
from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.otlp import CollectedSpan, OtlpReceiver, otlp, traceparent_ids
from tests.support.ports import eventually, free_port
from tests.support.queue import QueueUnderTest

pytestmark = pytest.mark.slow
assert otlp  # a fixture

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def fails_once() -> tuple[list[Call], object]:
    seen: list[Call] = []

    async def handler(call: Call) -> web.Response:
        seen.append(call)
        if len(seen) == 1:
            return web.Response(status=503, text="not yet")
        return web.Response(text="done")

    return seen, handler


async def test_an_async_call_with_a_retry_is_one_trace_from_the_caller_to_the_callback(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    receiver: CallbackReceiver,
    otlp: OtlpReceiver,
    tmp_path: Path,
) -> None:
    seen, handler = fails_once()
    gateway.function("flaky", handler)  # type: ignore[arg-type]
    functions = write_functions(
        tmp_path / "functions.yml", {"flaky": {"url": f"{gateway.url}/function/flaky"}}
    )
    env = gateway_env(queue, functions_file=str(functions), **otlp.env())
    async with gateway_process(env) as url:
        worker = await queue.spawn_worker(
            gateway_url=url,
            log_encoding="json",
            initial_retry_wait="300ms",
            max_retry_wait="300ms",
            **otlp.env(),
        )
        try:
            await eventually(lambda: _consuming(queue), what="the worker's consumer")
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{url}/async-function/flaky",
                    data=b"hello",
                    headers={
                        "X-Callback-Url": receiver.url("/done?token=secret"),
                        "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                    },
                ) as response,
            ):
                assert response.status == 202
                call_id = response.headers["X-Call-Id"]
            (callback,) = await receiver.wait_for(1)
            await otlp.wait_for(6)  # send, 2 x (process, invoke), callback
            kv = await queue.js.key_value(DEFAULT_BUCKET)
            store = LedgerStore(kv, queue.js, DEFAULT_BUCKET)
            await eventually(lambda: _finished(store, call_id), what="the final entry")
        finally:
            worker.terminate()
            _, stderr = await worker.communicate()
    assert worker.returncode == 0, stderr.decode(errors="replace")
    assert b"Traceback" not in stderr and b"detach" not in stderr, stderr.decode()
    # the log line about the retried attempt, and the call's ledger entry, name the trace
    (retried,) = [line for line in _json_lines(stderr) if "retrying" in line["msg"]]
    assert retried["trace_id"] == CALLER_TRACE
    shown = await ferry("calls", "get", call_id, env={"nats_url": queue.nats_url})
    (line,) = [line for line in shown.stdout.splitlines() if line.startswith("trace_id:")]
    assert line.split() == ["trace_id:", CALLER_TRACE], shown
    spans = otlp.spans
    assert {s.trace_id for s in spans} == {CALLER_TRACE}, "one trace, the caller's"
    (send,) = otlp.named("send ")
    first, second = otlp.named("process ")
    invokes = otlp.named("invoke ")
    (back,) = otlp.named("callback ")
    assert len(spans) == 6 and len(invokes) == 2, [s.name for s in spans]

    assert (send.name, send.kind, send.service) == ("send flaky", "producer", "ferry-gateway")
    assert send.parent_id == CALLER_SPAN
    assert send.attributes["messaging.message.id"] == call_id
    for attempt, process in enumerate((first, second), start=1):
        assert (process.name, process.kind) == ("process flaky", "consumer")
        assert process.service == "ferry-queue-worker"
        assert process.parent_id == send.span_id
        assert process.links == [(CALLER_TRACE, send.span_id)]
        assert process.attributes["ferry.attempt"] == attempt
        assert process.attributes["messaging.message.id"] == call_id
        assert process.attributes["ferry.queue_wait_seconds"] >= 0
    assert first.attributes["ferry.outcome"] == "retry" and first.error
    assert second.attributes["ferry.outcome"] == "succeeded" and not second.error
    assert (
        second.attributes["ferry.queue_wait_seconds"] > first.attributes["ferry.queue_wait_seconds"]
    )
    for process, invoke, status in zip((first, second), invokes, (503, 200), strict=True):
        assert (invoke.kind, invoke.parent_id) == ("client", process.span_id)
        assert invoke.attributes["http.response.status_code"] == status
        assert invoke.error == (status >= 400)
    assert (back.kind, back.parent_id) == ("client", second.span_id)
    assert back.attributes["http.response.status_code"] == 200

    # the function and the callback receiver were handed the context of the spans that called
    handed = [traceparent_ids(c.headers["traceparent"]) for c in seen]
    assert handed == [i.traceparent_ids for i in invokes]
    assert traceparent_ids(callback.headers["traceparent"]) == back.traceparent_ids
    # nothing secret went into a span
    assert "secret" not in json.dumps([vars(s) for s in spans], default=str)
    if dump := os.environ.get("FERRY_TRACE_SPANS"):  # scripts/trace-picture draws them
        _keep(Path(dump), spans)


async def _finished(store: LedgerStore, call_id: str) -> bool:
    entry = await store.get(call_id)
    return entry is not None and entry.state.final


def _json_lines(stderr: bytes) -> list[dict[str, str]]:
    return [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]


async def test_with_tracing_off_nothing_is_exported(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    receiver: CallbackReceiver,
    otlp: OtlpReceiver,
    tmp_path: Path,
) -> None:
    gateway.function("echo")
    functions = write_functions(
        tmp_path / "functions.yml", {"echo": {"url": f"{gateway.url}/function/echo"}}
    )
    off = otlp.env(OTEL_TRACES_EXPORTER="none")  # an endpoint, but no exporter
    env = gateway_env(queue, functions_file=str(functions), **off)
    async with gateway_process(env) as url:
        worker = await queue.spawn_worker(gateway_url=url, **off)
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{url}/async-function/echo",
                    headers={
                        "X-Callback-Url": receiver.url(),
                        "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                    },
                ) as response,
            ):
                assert response.status == 202
            (callback,) = await receiver.wait_for(1)
        finally:
            worker.terminate()
            _, stderr = await worker.communicate()
    # both processes have exited, so any span they had would have been sent by now
    assert worker.returncode == 0, stderr.decode(errors="replace")
    assert otlp.requests == 0 and otlp.spans == []
    assert b"tracing on" not in stderr
    # the caller's own context still reaches the function, as it always did
    (call,) = gateway.calls_to("echo")
    assert traceparent_ids(call.headers["traceparent"]) == (CALLER_TRACE, CALLER_SPAN)
    assert "traceparent" not in callback.headers


async def test_with_the_endpoint_down_calls_run_and_spans_are_dropped_not_held(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("echo")
    down = OtlpReceiver(port=free_port())  # not listening until the calls are done
    calls = 200  # a process and an invoke span each: 400 spans for a queue of 64
    env = down.env(
        OTEL_BSP_MAX_QUEUE_SIZE="64",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="16",
        OTEL_EXPORTER_OTLP_TIMEOUT="1",  # seconds: a failed export gives up quickly
    )
    for _ in range(calls):
        await queue.publish("echo", b"x")
    worker = await queue.spawn_worker(max_inflight="32", **env)
    try:
        await eventually(lambda: len(gateway.calls_to("echo")) >= calls, 30, what="all calls")
        await eventually(queue.drained, 10, what="every call acknowledged")
        await down.start()  # the endpoint is back: what the worker still holds is sent
        await eventually(lambda: down.spans, 15, what="the spans still queued")
    finally:
        worker.terminate()
        _, stderr = await worker.communicate()
        await down.stop()
    assert worker.returncode == 0, stderr.decode(errors="replace")
    # all that reached the endpoint fits the bounded queue and one batch in flight: the
    # spans made while it was down were dropped, never piled up in memory
    assert 0 < len(down.spans) <= 64 + 16, len(down.spans)


async def _consuming(queue: QueueUnderTest) -> bool:
    """The worker has made its consumer (it asks for messages right after)."""
    try:
        await queue.js.consumer_info(queue.stream, "faas-workers")
    except NatsError:
        return False
    return True


def _keep(path: Path, spans: list[CollectedSpan]) -> None:
    path.write_text(json.dumps([vars(s) for s in spans], indent=1) + "\n")

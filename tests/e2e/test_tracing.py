"""Tracing through real processes: `ferry gateway` and `ferry queue-worker` export their spans
over OTLP/HTTP to a receiver in the test, which decodes them with `opentelemetry-proto`."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ledger.entries import DEFAULT_BUCKET
from ledger.store import LedgerStore
from tests.support.cli import ferry
from tests.support.front_door import gateway_env, gateway_process, write_functions
from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.otlp import OtlpReceiver, otlp, traceparent_ids
from tests.support.ports import eventually
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
        worker = await queue.spawn_worker(gateway_url=url, log_encoding="json", **otlp.env())
        try:
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
            store = LedgerStore(await queue.js.key_value(DEFAULT_BUCKET))
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
    assert f"trace_id:         {CALLER_TRACE}" in shown.stdout, shown
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


async def _finished(store: LedgerStore, call_id: str) -> bool:
    entry = await store.get(call_id)
    return entry is not None and entry.state.final


def _json_lines(stderr: bytes) -> list[dict[str, str]]:
    return [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]

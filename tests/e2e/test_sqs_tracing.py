"""Tracing in `ferry sqs-connector`: a message's `traceparent` attribute is continued; a
message without one starts a trace of its own. Spans go over OTLP/HTTP to a receiver here."""

from __future__ import annotations

import pytest

from tests.contract.test_sqs_contract import sqs_env
from tests.support.http import FakeGateway
from tests.support.moto import MotoServer, Queues
from tests.support.otlp import OtlpReceiver, otlp, traceparent_ids
from tests.support.ports import eventually
from tests.support.procs import FerryProcess

pytestmark = pytest.mark.slow
assert otlp  # a fixture

SENDER_TRACE = "5b8efff798038103d269b633813fc60c"
SENDER_SPAN = "eee19b7ec3c1b174"


async def test_a_message_with_a_traceparent_is_continued_and_one_without_starts_a_trace(
    gateway: FakeGateway, moto_server: MotoServer, otlp: OtlpReceiver
) -> None:
    async with moto_server.sqs() as client:
        queues = Queues(client, "trace")
        url = await queues.create("orders")
        topic = url.rsplit("/", 1)[-1]
        gateway.function("fn")
        gateway.subscribe("fn", topic)
        traced_id = await queues.send(
            url, "traced", traceparent=f"00-{SENDER_TRACE}-{SENDER_SPAN}-01"
        )
        untraced_id = await queues.send(url, "untraced")
        process = await FerryProcess(
            "sqs-connector", sqs_env(moto_server, gateway, url, **otlp.env())
        ).start()
        try:
            await eventually(lambda: len(gateway.calls_to("fn")) == 2, 30, what="both messages")
            await otlp.wait_for(4)  # a process and an invoke span per message
            assert await process.stop() == 0, process.output()
        finally:
            await process.close()

    by_message = {s.attributes["messaging.message.id"]: s for s in otlp.named("process ")}
    traced, untraced = by_message[traced_id], by_message[untraced_id]
    assert (traced.name, traced.kind, traced.service) == (
        f"process {topic}",
        "consumer",
        "ferry-sqs-connector",
    )
    assert (traced.trace_id, traced.parent_id) == (SENDER_TRACE, SENDER_SPAN)
    assert traced.links == [(SENDER_TRACE, SENDER_SPAN)]
    assert untraced.parent_id == "" and untraced.trace_id != SENDER_TRACE
    for span in (traced, untraced):
        assert span.attributes["messaging.system"] == "aws_sqs"
        assert span.attributes["messaging.destination.name"] == topic
    calls = {c.body: c for c in gateway.calls_to("fn")}
    for span, body in ((traced, b"traced"), (untraced, b"untraced")):
        (invoke,) = [s for s in otlp.named("invoke ") if s.parent_id == span.span_id]
        assert invoke.trace_id == span.trace_id
        assert traceparent_ids(calls[body].headers["traceparent"]) == invoke.traceparent_ids

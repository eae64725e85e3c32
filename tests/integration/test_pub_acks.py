"""The front door's publisher: a call counts as stored only once JetStream said so, and any
doubt (an error answer, no stream, no answer in time) is a PublishError, against a real
nats-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from nats.js import api as js_api

from asyncq import codec
from asyncq.jetstream import NeverStorable, NoStream, PublishError
from asyncq.layout import queue_subject
from asyncq.pub_acks import PubAcks, read_ack
from asyncq.publisher import Publisher, build_request
from tests.support.queue import QueueUnderTest


@pytest.fixture
async def acks(queue: QueueUnderTest) -> AsyncIterator[PubAcks]:
    acks = PubAcks(queue.nc)
    await acks.start()
    yield acks
    await acks.close()


async def test_each_publish_gets_its_own_sequence_and_the_message_is_stored(
    queue: QueueUnderTest, acks: PubAcks
) -> None:
    publisher = Publisher(queue.js, queue.stream, acks=acks)
    requests = [build_request("fn", body=f"call {n}".encode()) for n in range(50)]
    answers = await asyncio.gather(*(publisher.enqueue(r) for r in requests))
    assert sorted(a.seq for a in answers) == list(range(1, 51))
    assert {a.stream for a in answers} == {queue.stream}
    assert not any(a.duplicate for a in answers)
    for request, answer in zip(requests, answers, strict=True):
        stored = await queue.js.get_msg(queue.stream, answer.seq)
        assert codec.decode(stored.data or b"").call_id == request.call_id
    assert acks.waiting == 0


async def test_a_call_sent_again_with_its_id_is_reported_duplicate_and_stored_once(
    queue: QueueUnderTest, acks: PubAcks
) -> None:
    publisher = Publisher(queue.js, queue.stream, acks=acks)
    request = build_request("fn", body=b"once")
    first = await publisher.enqueue(request)
    again = await publisher.enqueue(request)
    assert (first.duplicate, again.duplicate, again.seq) == (None, True, first.seq)
    assert (await queue.js.stream_info(queue.stream)).state.messages == 1


async def test_a_subject_no_stream_holds_is_no_stream(queue: QueueUnderTest, acks: PubAcks) -> None:
    with pytest.raises(NoStream):
        await acks.publish("nobody-holds-this", b"x", None, stream=queue.stream, timeout=5)


async def test_a_refusal_by_jetstream_is_a_publish_error(
    queue: QueueUnderTest, acks: PubAcks
) -> None:
    subject = queue_subject(queue.stream, "")
    with pytest.raises(PublishError, match="stream"):  # the expected stream is another one
        await acks.publish(subject, b"x", None, stream="not-" + queue.stream, timeout=5)
    assert (await queue.js.stream_info(queue.stream)).state.messages == 0


async def test_no_answer_in_time_is_a_publish_error_and_nothing_waits_after(
    queue: QueueUnderTest, acks: PubAcks
) -> None:
    # a plain subscriber takes the message and never answers: JetStream is not there
    sub = await queue.nc.subscribe("silent.subject")
    try:
        with pytest.raises(PublishError, match="no answer in time"):
            await acks.publish("silent.subject", b"x", None, stream=queue.stream, timeout=0.2)
        assert acks.waiting == 0
    finally:
        await sub.unsubscribe()


async def test_a_message_over_max_payload_is_never_storable(
    queue: QueueUnderTest, acks: PubAcks
) -> None:
    subject = queue_subject(queue.stream, "")
    too_big = b"x" * (queue.nc.max_payload + 1)
    with pytest.raises(NeverStorable):
        await acks.publish(subject, too_big, None, stream=queue.stream, timeout=5)
    assert acks.waiting == 0


def test_answers_that_are_not_a_pub_ack_are_errors_never_a_success() -> None:
    for data in (b"", b"not json", b"[1]", b'{"seq":1}', b'{"stream":"s"}'):
        with pytest.raises(PublishError):
            read_ack("s", data, None)
    error = b'{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}'
    with pytest.raises(PublishError, match="maximum messages exceeded"):
        read_ack("s", error, None)
    ack = read_ack("s", b'{"stream":"s","seq":7,"duplicate":true}', None)
    assert (ack.stream, ack.seq, ack.duplicate) == ("s", 7, True)


def test_the_quick_reading_of_a_pub_ack_agrees_with_nats_pys() -> None:
    answers = [
        b'{"stream":"s","seq":1}',
        b'{"stream":"faas-request","seq":18446744073709551615,"duplicate":true}',
        b'{"stream":"s","domain":"hub","seq":3}',
        b'{"stream":"s","seq":4,"duplicate":false}',
        b'{"stream":"s\\"x","seq":5}',
        b'{ "stream": "s", "seq": 6 }',
    ]
    for data in answers:
        expected = js_api.PubAck.from_response(json.loads(data))
        assert read_ack("s", data, None) == expected, data

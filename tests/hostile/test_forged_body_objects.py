"""A `Ferry-Body-Object` header is input like any other: whoever may publish on the queue can
write one. A forged reference must neither read nor delete what it names: another application's
object store stays unread and whole, and another call's body stays that call's, even while that
call waits between its retries."""

from __future__ import annotations

import os
import uuid

import pytest
from aiohttp import web

from asyncq.codec import encode
from asyncq.dead_letter_store import DeadLetterStore
from asyncq.large_bodies import BODY_OBJECT, BodyStore
from asyncq.layout import DEAD_REASON
from asyncq.publisher import Publisher, build_request
from tests.support.http import Call, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest

MiB = 1024 * 1024


@pytest.fixture
def bucket() -> str:
    return f"bodies-{uuid.uuid4().hex[:8]}"


async def _forge(queue: QueueUnderTest, function: str, reference: str) -> None:
    """A call to `function` whose body is said to be the object `reference`."""
    data = encode(build_request(function, body=b""))
    await queue.js.publish(
        queue.stream, data, headers={BODY_OBJECT: reference}, stream=queue.stream
    )


async def _reasons(queue: QueueUnderTest) -> dict[str, str]:
    return {
        letter.headers["Ferry-Function"]: letter.headers[DEAD_REASON]
        for letter in await queue.dead_letters()
    }


async def test_a_reference_to_another_object_store_is_not_read_and_not_deleted(
    queue: QueueUnderTest, gateway: FakeGateway, bucket: str
) -> None:
    other = f"app-secrets-{uuid.uuid4().hex[:8]}"
    secrets = await queue.js.create_object_store(other)
    name = str(uuid.uuid4())
    await secrets.put(name, b"the other application's secret")
    gateway.function("thief")
    await _forge(queue, "thief", f"{other}/{name}")
    async with queue.worker(large_body_bucket=bucket):
        await eventually(lambda: _reasons(queue), 20, what="the forged call's dead letter")
    assert gateway.calls_to("thief") == []
    assert "is not in large_body_bucket" in (await _reasons(queue))["thief"]
    assert (await secrets.get(name)).data == b"the other application's secret"


async def test_a_reference_to_a_call_waiting_for_its_retry_leaves_that_call_its_body(
    queue: QueueUnderTest, gateway: FakeGateway, bucket: str
) -> None:
    bodies = BodyStore(queue.js, bucket)
    await bodies.ensure()
    body = os.urandom(2 * MiB)
    answers = iter([web.Response(status=503, headers={"Retry-After": "1"})])

    def victim(call: Call) -> web.Response:
        return next(answers, None) or web.Response(body=call.body)

    gateway.function("victim", victim)
    gateway.function("thief")
    await Publisher(queue.js, queue.stream, bodies).enqueue(build_request("victim", body=body))
    stored = await queue.js.get_msg(queue.stream, 1)
    reference = (stored.headers or {})[BODY_OBJECT]
    await _forge(queue, "thief", reference)
    async with queue.worker(large_body_bucket=bucket, max_retry_wait="2s"):
        await eventually(lambda: len(gateway.calls_to("victim")) == 2, 30, what="the retry")
        await eventually(queue.drained, 20, what="both calls done")
    assert gateway.calls_to("thief") == []
    assert gateway.calls_to("victim")[1].body == body  # the whole body, at the retry
    reasons = await _reasons(queue)
    assert list(reasons) == ["thief"], reasons
    assert "belongs to another call" in reasons["thief"]


async def test_purging_a_forged_calls_dead_letter_leaves_the_object_it_named(
    queue: QueueUnderTest, gateway: FakeGateway, bucket: str
) -> None:
    bodies = BodyStore(queue.js, bucket)
    await bodies.ensure()
    owner = encode(build_request("victim", body=b""))
    reference = await bodies.put(b"the victim's body", owner=owner)
    gateway.function("thief")
    await _forge(queue, "thief", reference)
    async with queue.worker(large_body_bucket=bucket):
        await eventually(lambda: _reasons(queue), 20, what="the forged call's dead letter")
    store = DeadLetterStore(
        queue.js, queue.dead_stream, request_stream=queue.stream, body_bucket=bucket
    )
    assert await store.purge() == 1
    assert gateway.calls_to("thief") == []
    opened = await bodies.open(reference, owner)  # still there, and still the victim's
    assert opened.length == len(b"the victim's body")

"""Finding 7: dead-letter headers round-trip as text whatever their characters, and
`ferry dead-letters` never crashes on a value some other client wrote."""

from __future__ import annotations

from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncq.header_text import decode_value, encode_value
from tests.support.cli import Finished, ferry
from tests.support.http import Call, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest
from tests.support.streams import stored_messages


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_any_text_survives_as_a_header_value(text: str) -> None:
    encoded = encode_value(text)
    assert encoded.isascii() and encoded.isprintable() and encoded == encoded.strip()
    assert decode_value(encoded) == text


async def _refuse(call: Call) -> web.Response:
    return web.Response(status=400, text="non")


async def _dead_letters(queue: QueueUnderTest, *args: str) -> Finished:
    env = {"nats_url": queue.nats_url, "nats_stream": queue.stream}
    return await ferry("dead-letters", *args, env={**env, "dead_letter_stream": queue.dead_stream})


async def test_a_non_ascii_call_id_is_listed_and_replayed_as_written(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("broken", _refuse)
    await queue.publish("broken", b"x", headers=[("X-Call-Id", "café-1 ☕")])
    async with queue.worker():
        await eventually(lambda: queue.dead_letters(), what="the dead letter")
    listed = await _dead_letters(queue, "list")
    assert listed.status == 0, listed.stderr
    assert "café-1 ☕" in listed.stdout
    replayed = await _dead_letters(queue, "replay", "café-1 ☕")
    assert replayed.status == 0, replayed.stderr
    assert "replayed 1 dead letter" in replayed.stdout


async def test_values_another_client_wrote_are_read_without_crashing(
    queue: QueueUnderTest,
) -> None:
    await queue.js.publish(
        f"{queue.dead_stream}.cafe",
        b'{"Function":"cafe"}',
        headers={
            "Ferry-Function": "café",
            "Ferry-Call-Id": "über-1",
            "Ferry-Dead-Reason": "naïve reason",
            "Ferry-Original-Subject": queue.stream,
        },
        stream=queue.dead_stream,
    )
    listed = await _dead_letters(queue, "list")
    assert listed.status == 0, listed.stderr
    assert "café" in listed.stdout and "über-1" in listed.stdout
    replayed = await _dead_letters(queue, "replay", "-f", "café")
    assert replayed.status == 0, replayed.stderr
    assert len(await stored_messages(queue.js, queue.stream)) == 1
    await queue.js.publish(
        f"{queue.dead_stream}.cafe",
        b"{}",
        headers={"Ferry-Function": "café"},
        stream=queue.dead_stream,
    )
    purged = await _dead_letters(queue, "purge", "-f", "café")
    assert purged.status == 0, purged.stderr
    assert "purged 1 dead letter" in purged.stdout

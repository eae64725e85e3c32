"""`ferry dead-letters` lists, replays (publish first, then delete) and purges dead letters."""

from __future__ import annotations

import re

from aiohttp import web

from asyncq.codec import QueueRequest
from tests.support.cli import Finished, ferry
from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest
from tests.support.streams import stored_messages


async def bad_request(call: Call) -> web.Response:
    return web.Response(status=400, text="no")


async def dead_letters(queue: QueueUnderTest, *args: str) -> Finished:
    env = {"nats_url": queue.nats_url, "nats_stream": queue.stream}
    return await ferry("dead-letters", *args, env={**env, "dead_letter_stream": queue.dead_stream})


async def kill(queue: QueueUnderTest, *calls: tuple[str, str]) -> list[QueueRequest]:
    """Publish calls that answer 400 and let a worker dead-letter them all."""
    published = [
        await queue.publish(fn, b"body", callback_url=cb)
        if cb
        else await queue.publish(fn, b"body")
        for fn, cb in calls
    ]
    async with queue.worker():

        async def all_dead() -> bool:
            return len(await queue.dead_letters()) >= len(calls)

        await eventually(all_dead, timeout=15, what="dead letters")
    return published


async def test_list_shows_call_function_reason_attempts_and_status(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("broken", bad_request)
    gateway.function("other", bad_request)
    first, second, third = await kill(queue, ("broken", ""), ("broken", ""), ("other", ""))

    listed = await dead_letters(queue, "list")
    assert listed.status == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:2] == ["CALL", "ID"]
    # oldest first: one function's in the order they failed (the worker interleaves functions)
    listed_ids = [row.split()[0] for row in rows]
    assert sorted(listed_ids) == sorted([first.call_id, second.call_id, third.call_id])
    assert listed_ids.index(first.call_id) < listed_ids.index(second.call_id)
    row = rows[listed_ids.index(first.call_id)]
    assert row.split()[1:4] == ["broken", "1", "400"]
    assert re.fullmatch(r"\d+s", row.split()[4])  # the age, seconds on a slow machine
    assert "400" in row.split(None, 5)[5]

    only_other = await dead_letters(queue, "list", "--function", "other")
    assert [row.split()[0] for row in only_other.stdout.splitlines()[1:]] == [third.call_id]


async def test_replay_requeues_then_removes_and_the_call_then_succeeds(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    gateway.function("flaky", bad_request)
    gateway.function("other", bad_request)
    (call, kept) = await kill(queue, ("flaky", receiver.url()), ("other", ""))
    await receiver.wait_for(1)
    gateway.function("flaky")

    replayed = await dead_letters(queue, "replay", call.call_id)
    assert replayed.status == 0, replayed.stderr
    assert call.call_id in replayed.stdout
    assert [d.headers["Ferry-Call-Id"] for d in await queue.dead_letters()] == [kept.call_id]
    async with queue.worker():
        await receiver.wait_for(2)
    assert receiver.received[1].headers["X-Call-Id"] == call.call_id
    assert receiver.received[1].headers["X-Function-Status"] == "200"
    assert [c.function for c in gateway.calls].count("flaky") == 2


async def test_replayed_call_that_fails_again_is_dead_lettered_again(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("broken", bad_request)
    (call,) = await kill(queue, ("broken", ""))
    assert (await dead_letters(queue, "replay", "--function", "broken")).status == 0
    assert await queue.dead_letters() == []
    async with queue.worker():

        async def dead_again() -> bool:
            return len(await queue.dead_letters()) == 1

        await eventually(dead_again, timeout=15, what="dead again")
    (again,) = await queue.dead_letters()
    assert again.headers["Ferry-Call-Id"] == call.call_id


async def test_replay_rerun_after_a_crash_between_publish_and_delete_queues_once(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("broken", bad_request)
    await kill(queue, ("broken", ""))
    (letter,) = await stored_messages(queue.js, queue.dead_stream)
    # what a replay that died after publishing and before deleting left behind
    await queue.js.publish(
        letter.headers["Ferry-Original-Subject"],
        letter.data,
        headers={"Nats-Msg-Id": f"replay:{queue.dead_stream}:{letter.seq}"},
        stream=queue.stream,
    )
    assert await queue.stored() == 1
    assert (await dead_letters(queue, "replay")).status == 0
    assert await queue.stored() == 1
    assert await queue.dead_letters() == []


async def test_purge_removes_one_functions_dead_letters_or_all(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("a", bad_request)
    gateway.function("b", bad_request)
    await kill(queue, ("a", ""), ("b", ""), ("b", ""))
    purged = await dead_letters(queue, "purge", "--function", "b")
    assert purged.stdout.strip() == "purged 2 dead letters"
    assert [d.headers["Ferry-Function"] for d in await queue.dead_letters()] == ["a"]
    assert (await dead_letters(queue, "purge")).stdout.strip() == "purged 1 dead letter"
    assert await queue.dead_letters() == []


async def test_replay_of_an_unknown_call_id_is_one_line_and_exit_2(queue: QueueUnderTest) -> None:
    result = await dead_letters(queue, "replay", "no-such-call")
    assert result.status == 2
    assert result.stderr.strip() == "ferry: no dead letter for call id no-such-call"


async def test_an_unknown_call_id_with_control_characters_is_shown_escaped(
    queue: QueueUnderTest,
) -> None:
    result = await dead_letters(queue, "replay", "nope\x1b[2J\nforged")
    assert result.status == 2
    assert "\x1b" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

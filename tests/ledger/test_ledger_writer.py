"""The ledger writer: the last change of a key wins, held changes still land, the queue stays
bounded and failures are counted, against a real JetStream bucket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from ledger.writer import BATCH, DEFAULT_LIMIT, Change, LedgerWriter, Op
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest


class Counts:
    """What the writer reported, and every write that reached the bucket's subjects."""

    def __init__(self) -> None:
        self.failures = 0
        self.drops = 0
        self.writes: dict[str, list[bytes]] = {}

    async def seen(self, msg: Msg) -> None:
        key = msg.subject.split(".", 2)[2]
        self.writes.setdefault(key, []).append(msg.data)

    def failed(self, count: int) -> None:
        self.failures += count

    def dropped(self) -> None:
        self.drops += 1


@pytest.fixture
async def counts(queue: QueueUnderTest, ledger: LedgerUnderTest) -> AsyncIterator[Counts]:
    counts = Counts()
    sub = await queue.nc.subscribe(f"$KV.{ledger.bucket}.>", cb=counts.seen)
    yield counts
    await sub.unsubscribe()


def writer_for(
    queue: QueueUnderTest,
    bucket: str,
    counts: Counts,
    *,
    limit: int = DEFAULT_LIMIT,
    gather: float = 0.0,
) -> LedgerWriter:
    return LedgerWriter(
        queue.nc,
        bucket,
        on_failure=counts.failed,
        on_drop=counts.dropped,
        limit=limit,
        gather=gather,
    )


# keys outside `call.>`, which the `ledger` fixture follows as call entries
async def value(ledger: LedgerUnderTest, key: str) -> bytes | None:
    kv = await ledger.js.key_value(ledger.bucket)
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:  # never written (a deleted key too); any other error fails the test
        return None
    return entry.value


async def test_a_later_change_of_a_key_replaces_one_still_waiting(
    queue: QueueUnderTest, ledger: LedgerUnderTest, counts: Counts
) -> None:
    writer = writer_for(queue, ledger.bucket, counts)
    await writer.start()
    writer.submit("w.a", Change(Op.PUT, b"running", held=True))
    writer.submit("w.a", Change(Op.PUT, b"succeeded", final=True))
    await writer.close()
    assert await value(ledger, "w.a") == b"succeeded"
    assert counts.writes.get("w.a") == [b"succeeded"]  # the held one never left
    assert (counts.failures, counts.drops) == (0, 0)


async def test_a_held_change_nothing_replaces_is_written_after_the_hold(
    queue: QueueUnderTest, ledger: LedgerUnderTest, counts: Counts
) -> None:
    writer = writer_for(queue, ledger.bucket, counts)
    await writer.start()
    try:
        writer.submit("w.slow", Change(Op.PUT, b"running", held=True))
        await eventually(lambda: counts.writes.get("w.slow") == [b"running"], what="write")
    finally:
        await writer.close()


async def test_when_full_an_intermediate_change_is_dropped_before_a_final_one(
    queue: QueueUnderTest, ledger: LedgerUnderTest, counts: Counts
) -> None:
    writer = writer_for(queue, ledger.bucket, counts, limit=2)
    await writer.start()
    # nothing is sent before the next turn of the loop: all three wait together
    writer.submit("w.final", Change(Op.PUT, b"succeeded", final=True))
    writer.submit("w.middle", Change(Op.PUT, b"running", held=True))
    writer.submit("w.new", Change(Op.PUT, b"failed", final=True))
    await writer.close()
    assert counts.drops == 1
    assert await value(ledger, "w.final") == b"succeeded"
    assert await value(ledger, "w.new") == b"failed"
    assert await value(ledger, "w.middle") is None


async def test_writes_to_a_bucket_that_is_gone_are_counted_as_failed(
    queue: QueueUnderTest, ledger: LedgerUnderTest, counts: Counts
) -> None:
    writer = writer_for(queue, ledger.bucket + "-gone", counts)
    await writer.start()
    for n in range(3):
        writer.submit(f"w.{n}", Change(Op.PUT, b"x", final=True))
    await writer.close()
    assert counts.failures == 3


async def test_create_leaves_an_entry_a_worker_already_wrote(
    queue: QueueUnderTest, ledger: LedgerUnderTest, counts: Counts
) -> None:
    writer = writer_for(queue, ledger.bucket, counts)
    await writer.start()
    writer.submit("w.b", Change(Op.PUT, b"running"))
    await writer.close()
    late = writer_for(queue, ledger.bucket, counts)
    await late.start()
    late.submit("w.b", Change(Op.CREATE, b"queued"))
    await late.close()
    assert await value(ledger, "w.b") == b"running"
    assert counts.failures == 0  # a lost race is not a failure


async def test_a_burst_of_many_batches_lands_whole_and_in_order_per_key(
    queue: QueueUnderTest, ledger: LedgerUnderTest, counts: Counts
) -> None:
    writer = writer_for(queue, ledger.bucket, counts)
    await writer.start()
    for n in range(5 * BATCH + 3):
        writer.submit(f"w.{n}", Change(Op.PUT, b"running"))
        if n % 7 == 0:
            await asyncio.sleep(0)  # let some batches leave before their later change
        writer.submit(f"w.{n}", Change(Op.PUT, f"done {n}".encode(), final=True))
    await writer.close(timeout=10)
    assert counts.failures == 0
    await eventually(lambda: len(counts.writes) == 5 * BATCH + 3, what="every key written")
    assert all(seen[-1] == f"done {key[2:]}".encode() for key, seen in counts.writes.items())
    for n in (0, BATCH, 5 * BATCH + 2):
        assert await value(ledger, f"w.{n}") == f"done {n}".encode()


async def test_a_whole_batch_leaves_at_once_however_long_the_writer_may_gather(
    queue: QueueUnderTest, ledger: LedgerUnderTest, counts: Counts
) -> None:
    writer = writer_for(queue, ledger.bucket, counts, gather=600.0)
    await writer.start()
    try:
        for n in range(BATCH):
            writer.submit(f"w.{n}", Change(Op.PUT, b"done", final=True))
        await eventually(lambda: len(counts.writes) == BATCH, what="the batch written")
    finally:
        await writer.close()
    assert counts.failures == 0


async def test_closing_sends_what_is_gathering_without_waiting_out_the_gather(
    queue: QueueUnderTest, ledger: LedgerUnderTest, counts: Counts
) -> None:
    writer = writer_for(queue, ledger.bucket, counts, gather=600.0)
    await writer.start()
    writer.submit("w.last", Change(Op.PUT, b"succeeded", final=True))
    await asyncio.sleep(0.05)  # the writer is gathering
    assert "w.last" not in counts.writes
    await writer.close()
    assert await value(ledger, "w.last") == b"succeeded"


class Broken:
    def encode(self) -> bytes:
        raise ValueError("cannot write this entry")


async def test_an_entry_that_cannot_be_encoded_is_counted_and_the_writer_goes_on(
    queue: QueueUnderTest, ledger: LedgerUnderTest, counts: Counts
) -> None:
    writer = writer_for(queue, ledger.bucket, counts)
    await writer.start()
    writer.submit("w.bad", Change(Op.PUT, Broken(), final=True))
    writer.submit("w.good", Change(Op.PUT, b"fine", final=True))
    await writer.close()
    assert counts.failures == 1
    assert await value(ledger, "w.good") == b"fine"
    late = writer_for(queue, ledger.bucket, counts)  # and a batch of only that one
    await late.start()
    late.submit("w.bad", Change(Op.PUT, Broken(), final=True))
    await asyncio.sleep(0.05)
    late.submit("w.after", Change(Op.PUT, b"still", final=True))
    await late.close()
    assert counts.failures == 2
    assert await value(ledger, "w.after") == b"still"


async def test_an_entry_over_max_payload_is_counted_alone_and_its_batch_lands(
    queue: QueueUnderTest, ledger: LedgerUnderTest, counts: Counts
) -> None:
    writer = writer_for(queue, ledger.bucket, counts)
    await writer.start()
    writer.submit("w.before", Change(Op.PUT, b"one", final=True))
    writer.submit("w.huge", Change(Op.PUT, b"x" * (queue.nc.max_payload + 1), final=True))
    writer.submit("w.after", Change(Op.PUT, b"two", final=True))
    await writer.close()
    assert counts.failures == 1
    assert await value(ledger, "w.before") == b"one"
    assert await value(ledger, "w.after") == b"two"

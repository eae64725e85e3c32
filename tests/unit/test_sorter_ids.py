"""The sorter reads a message's stream sequence from its reply subject, as nats-py does."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from queue_worker.delivery_numbers import ack_numbers, stream_seq


def seq(msg: Msg) -> int | None:
    """The stream sequence as nats-py reads it (its `Msg.metadata`)."""
    return msg.metadata.sequence.stream if msg.metadata.sequence else None


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.faas-request.faas-workers.1.4217.93.1765090000000000000.12",
        "$JS.ACK.hub.ACCHASH.faas-request.faas-workers.3.77.5.1765090000000000000.0.rnd",
        "$JS.ACK._.ACCHASH.faas-request.faas-workers.3.78.5.1765090000000000000.0",
    ],
)
def test_the_moved_copy_id_uses_the_stream_sequence_nats_py_reads(reply: str) -> None:
    msg = Msg(None, subject="faas-request", reply=reply)  # type: ignore[arg-type]
    assert stream_seq(msg) == seq(msg)
    assert stream_seq(msg) in (4217, 77, 78)


def test_a_message_with_no_stream_sequence_has_none_rather_than_a_shared_id() -> None:
    """Copies without a sequence must not share one `Nats-Msg-Id` (JetStream would keep the
    first and drop the others as duplicates while their originals are acknowledged)."""
    for reply in ("_INBOX.x.1", ""):
        assert stream_seq(Msg(None, subject="s", reply=reply)) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.faas-request.faas-workers.3.4217.93.1765090000000000000.12",
        "$JS.ACK.hub.ACCHASH.faas-request.faas-workers.3.4217.5.1765090000000000000.12.rnd",
    ],
)
def test_the_delivery_count_and_backlog_are_read_as_nats_py_reads_them(reply: str) -> None:
    msg = Msg(None, subject="faas-request", reply=reply)  # type: ignore[arg-type]
    assert ack_numbers(msg) == (4217, 3, 12)
    meta = msg.metadata
    assert (meta.num_delivered, meta.num_pending) == (3, 12)


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.s.c.1." + "9" * 5000 + ".1.1.0",  # more digits than int() takes
        "$JS.ACK.s.c.x.y.z.t.p",  # not numbers
        "$JS.ACK.s.c.1.2",  # too few tokens
        "$JS.ACK.s.c.\x07.2.3.4.5",  # a control character
        "$JS.ACK" + ".1" * 40,  # too many tokens for either layout
    ],
)
def test_a_reply_subject_it_cannot_read_gives_no_numbers_and_raises_nothing(reply: str) -> None:
    msg = Msg(None, subject="faas-request", reply=reply)  # type: ignore[arg-type]
    number, delivered, pending = ack_numbers(msg)
    assert delivered >= 1 and pending >= 0
    assert number is None or number >= 0


def test_each_delivery_reads_its_own_numbers_and_few_are_kept() -> None:
    """A message's numbers are kept by its reply subject, which names one delivery: a later
    delivery of the same message reads its own count, and the keeping is bounded."""
    from queue_worker import delivery_numbers

    def numbers(
        delivered: int, seq: int = 4217, stream: str = "faas-request"
    ) -> tuple[int | None, int, int]:
        reply = f"$JS.ACK.{stream}.faas-workers.{delivered}.{seq}.93.1765090000000000000.12"
        return ack_numbers(Msg(None, subject="s", reply=reply))  # type: ignore[arg-type]

    assert numbers(1) == (4217, 1, 12)
    assert numbers(1) == (4217, 1, 12)
    assert numbers(2) == (4217, 2, 12)
    assert numbers(1) == (4217, 1, 12)
    for seq in range(3000):
        assert numbers(1, seq) == (seq, 1, 12)
    assert delivery_numbers._reply_numbers.cache_info().currsize <= 1024
    misses = delivery_numbers._reply_numbers.cache_info().misses
    assert numbers(5, 7, "s" * 300) == (7, 5, 12)  # a long subject is read, never kept
    assert delivery_numbers._reply_numbers.cache_info().misses == misses

"""What waits in the queue per function, read from NATS alone: the calls stored on each
function's subject (fair mode) and how many of them a worker holds now. What `ferry queues`
prints and the console's Functions page shows; every read is bounded."""

from __future__ import annotations

from dataclasses import dataclass

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from asyncq import codec
from asyncq.jetstream import stream_holding
from asyncq.layout import HASHED_PREFIX, function_subjects
from connectors.core.errors import DecodeError, FerryError
from connectors.jetstream.connect import describe

MAX_SHOWN = 200  # functions listed, the largest backlogs first
MAX_CONSUMERS = 2_000  # consumers read to find each function's calls in flight


class BacklogUnavailable(FerryError):
    """The queue's stream or its consumers could not be read."""


@dataclass(frozen=True)
class FunctionBacklog:
    function: str  # as the queued calls name it; the subject's token if none could be read
    queue: str  # named queue, "" for the default one
    subject: str
    stored: int  # calls on the subject: waiting, or taken by a worker and not yet done
    in_flight: int  # of those, delivered to a worker and not acknowledged (-1: no consumer yet)


@dataclass(frozen=True)
class QueueBacklog:
    stream: str
    unsorted: int  # calls on the plain subjects: waiting, or held by a worker's lane
    functions: list[FunctionBacklog]
    more: int  # functions with calls beyond those listed


async def read_backlog(js: JetStreamContext, nats_stream: str) -> QueueBacklog:
    try:
        stream = await stream_holding(js, nats_stream) or nats_stream
        info = await js.stream_info(stream, subjects_filter=function_subjects(nats_stream))
        counts = dict(info.state.subjects or {})
        in_flight = await _in_flight(js, stream)
        unsorted = await _unsorted(js, stream, nats_stream)
    except NotFoundError:
        return QueueBacklog(nats_stream, 0, [], 0)
    except (NatsError, TimeoutError, FerryError) as exc:
        reason = exc if isinstance(exc, FerryError) else describe(exc)
        raise BacklogUnavailable(f"cannot read the queue {nats_stream}: {reason}") from None
    largest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    functions = [
        FunctionBacklog(
            await _function_of(js, stream, subject),
            _queue_of(subject),
            subject,
            stored,
            in_flight.get(subject, -1),
        )
        for subject, stored in largest[:MAX_SHOWN]
    ]
    return QueueBacklog(stream, unsorted, functions, max(0, len(largest) - MAX_SHOWN))


async def _in_flight(js: JetStreamContext, stream: str) -> dict[str, int]:
    """Acknowledgements pending per filter subject, over the stream's consumers."""
    found: dict[str, int] = {}
    for consumer in (await js.consumers_info(stream))[:MAX_CONSUMERS]:
        subject = consumer.config.filter_subject
        if subject:
            found[subject] = found.get(subject, 0) + (consumer.num_ack_pending or 0)
    return found


def _queue_of(subject: str) -> str:
    """The named queue's token in `{stream}.fn.{queue}.{function}`, "" for the default queue
    (a stream name is one token: NATS refuses dots in it)."""
    tokens = subject.split(".")
    return tokens[2] if len(tokens) == 4 else ""


async def _unsorted(js: JetStreamContext, stream: str, nats_stream: str) -> int:
    """Calls on the plain subjects (`faas-request`, `faas-request.NAME`): where OpenFaaS
    gateways and static publishers put them, until a fair worker's sorter moves them."""
    total = 0
    for subjects in (nats_stream, f"{nats_stream}.*"):
        info = await js.stream_info(stream, subjects_filter=subjects)
        total += sum((info.state.subjects or {}).values())
    return total


async def _function_of(js: JetStreamContext, stream: str, subject: str) -> str:
    """A plain token is the function's name; a hashed one is read back from the newest call on
    the subject (one request, only for names that are not plain, such as `name.namespace`)."""
    token = subject.rsplit(".", 1)[-1]
    if not token.startswith(HASHED_PREFIX):
        return token
    try:
        newest = await js.get_last_msg(stream, subject)
        return codec.decode(newest.data or b"").function[:256]
    except (NatsError, TimeoutError, DecodeError):
        return token

"""A queued call decoded once: fair mode's sorter decodes a call from the plain subject to
learn its function, and the handler that runs it takes that decoding instead of parsing the
message again (the JSON is most of a held call's routing cost). Kept on the message itself,
so it goes wherever the message goes and nothing outlives it."""

from __future__ import annotations

from nats.aio.msg import Msg

from asyncq.codec import QueueRequest

_KEY = "_ferry_request"


def remember(msg: Msg, request: QueueRequest) -> None:
    msg.__dict__[_KEY] = request


def take(msg: Msg) -> QueueRequest | None:
    """The decoding remembered for `msg` (forgotten now), or None."""
    found = msg.__dict__.pop(_KEY, None)
    return found if isinstance(found, QueueRequest) else None

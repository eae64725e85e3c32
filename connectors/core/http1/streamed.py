"""A request body sent as it is read, for bodies too large to hold whole in memory."""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass

from connectors.core.http1.wire import HttpError


class BodySourceError(HttpError):
    """A streamed body could not be read, or did not have the length it declared.

    The connection it was going out on is closed, so the peer never mistakes a short body for
    a whole one."""


@dataclass(frozen=True, slots=True)
class StreamedBody:
    """`length` bytes, sent with `Content-Length: length` as `chunks` yields them.

    `chunks` is iterated once per sending. A request on a reused connection that the server
    had closed is sent once more, so give an iterable that starts over when iterated again
    (a one-shot generator then fails with BodySourceError instead)."""

    length: int
    chunks: AsyncIterable[bytes]

"""Reading back what is stored in a JetStream stream, message by message."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError


@dataclass
class StoredMessage:
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]


async def stored_messages(js: JetStreamContext, stream: str) -> list[StoredMessage]:
    out: list[StoredMessage] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(stream, seq=seq, next=True, subject=">")
        except NotFoundError:
            return out
        assert raw.seq is not None
        out.append(
            StoredMessage(raw.seq, raw.subject or "", raw.data or b"", dict(raw.headers or {}))
        )
        seq = raw.seq + 1

"""Writes messages that ferry gives up on to the dead-letter stream, with the reason."""

from __future__ import annotations

import time

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from asyncq.header_text import encode_value
from asyncq.jetstream import publish
from asyncq.large_bodies import BODY_OBJECT, server_max_payload
from asyncq.layout import (
    DEAD_AT,
    DEAD_ATTEMPTS,
    DEAD_BODY_OMITTED,
    DEAD_CALL_ID,
    DEAD_FUNCTION,
    DEAD_LAST_STATUS,
    DEAD_REASON,
    DEAD_SUBJECT,
    dead_letter_subject,
)


class DeadLetterWriter:
    def __init__(self, js: JetStreamContext, stream: str) -> None:
        self.js = js
        self.stream = stream

    async def write(
        self,
        msg: Msg,
        *,
        function: str,
        call_id: str,
        reason: str,
        attempts: int,
        last_status: str,
    ) -> None:
        """Store the original message and why it died; raises PublishError if not stored.

        Values from input are bounded and encoded so they read back as written
        (`header_text`); the subject is bounded whatever the function's name (`layout`).
        The message id is the source stream and sequence, so a worker that crashes after
        writing and before acking does not store the same dead letter twice. A claim check
        (`Ferry-Body-Object`) goes with it: the object stays until the dead letter is purged.
        """
        meta = msg.metadata
        source = f"{meta.stream}:{meta.sequence.stream if meta.sequence else ''}"
        headers = {
            "Nats-Msg-Id": f"dead:{source}",
            DEAD_REASON: encode_value(_one_line(reason)),
            DEAD_ATTEMPTS: str(attempts),
            DEAD_LAST_STATUS: encode_value(last_status),
            DEAD_SUBJECT: encode_value(msg.subject),
            DEAD_FUNCTION: encode_value(function),
            DEAD_CALL_ID: encode_value(call_id),
            DEAD_AT: str(time.time_ns()),
        }
        reference = (msg.headers or {}).get(BODY_OBJECT)
        if reference:  # the dead letter keeps the call's body object, for replay
            headers[BODY_OBJECT] = str(reference)
        data = msg.data
        limit = server_max_payload(self.js)
        if len(data) + _header_block_size(headers) > limit:
            # a message near the size limit has no room left for the headers: keep the record
            # (the reason, the call) without the message rather than hand it back for ever
            headers[DEAD_BODY_OMITTED] = (
                f"the message ({len(data)} bytes) was not kept: with its dead-letter headers it "
                f"is over the server's max_payload ({limit} bytes)"
            )
            data = b""
        await publish(
            self.js,
            dead_letter_subject(self.stream, function),
            data,
            headers=headers,
            stream=self.stream,
        )


def _header_block_size(headers: dict[str, str]) -> int:
    """Bytes the headers take in a NATS message (`NATS/1.0`, one line each, a blank line)."""
    return 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())


def _one_line(text: str) -> str:
    return " ".join(text.split())[:1000]

"""Writes messages that ferry gives up on to the dead-letter stream, with the reason."""

from __future__ import annotations

import time

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from queue_worker.header_text import encode_value
from queue_worker.jetstream import publish
from queue_worker.large_bodies import BODY_OBJECT
from queue_worker.layout import (
    DEAD_AT,
    DEAD_ATTEMPTS,
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
        await publish(
            self.js,
            dead_letter_subject(self.stream, function),
            msg.data,
            headers=headers,
            stream=self.stream,
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())[:1000]

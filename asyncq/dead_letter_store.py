"""Reading, replaying and purging the dead-letter stream (what `ferry dead-letters` drives).

Replay publishes first and deletes second. The replayed message's `Nats-Msg-Id` names the dead
letter (`replay:{stream}:{seq}`), not the call, so a replay is never mistaken for the original
call inside the duplicate window, while a replay re-run after a crash between the two steps is
stored once. A message that fails again is dead-lettered again, as a new dead letter.

A dead letter whose call's body is in the object store (`Ferry-Body-Object`) keeps that
object: replay hands the reference on with the message, purge deletes the object too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from asyncq.header_text import decode_headers
from asyncq.jetstream import publish
from asyncq.large_bodies import BODY_OBJECT, BodyStore
from asyncq.layout import (
    DEAD_AT,
    DEAD_ATTEMPTS,
    DEAD_BODY_OMITTED,
    DEAD_CALL_ID,
    DEAD_FUNCTION,
    DEAD_LAST_STATUS,
    DEAD_REASON,
    DEAD_SUBJECT,
)
from asyncq.settings import DEFAULT_BUCKET
from connectors.core.errors import FerryError
from connectors.jetstream.connect import describe

log = logging.getLogger("ferry.dead_letters")


class DeadLetterError(FerryError):
    """The dead-letter stream could not be read or changed."""


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]

    @property
    def call_id(self) -> str:
        return self.headers.get(DEAD_CALL_ID, "")

    @property
    def function(self) -> str:
        return self.headers.get(DEAD_FUNCTION, "")

    @property
    def reason(self) -> str:
        return self.headers.get(DEAD_REASON, "")

    @property
    def body_omitted(self) -> str:
        """Why the message is not in the dead letter (too large to keep), or ""."""
        return self.headers.get(DEAD_BODY_OMITTED, "")

    @property
    def attempts(self) -> str:
        return self.headers.get(DEAD_ATTEMPTS, "")

    @property
    def last_status(self) -> str:
        return self.headers.get(DEAD_LAST_STATUS, "")

    @property
    def body_object(self) -> str:
        return self.headers.get(BODY_OBJECT, "")

    @property
    def original_subject(self) -> str:
        return self.headers.get(DEAD_SUBJECT, "")

    def age(self, now_ns: int | None = None) -> float:
        """Seconds since the message was dead-lettered (0 if the time is unknown)."""
        try:
            dead_at = int(self.headers.get(DEAD_AT, ""))
        except ValueError:
            return 0.0
        return max(0.0, ((now_ns or time.time_ns()) - dead_at) / 1e9)

    def belongs_to(self, function: str) -> bool:
        """`echo` matches `echo` and `echo.ns`; `echo.ns` matches only itself."""
        return self.function == function or (
            "." not in function and self.function.partition(".")[0] == function
        )


class DeadLetterStore:
    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        *,
        request_stream: str,
        body_bucket: str = DEFAULT_BUCKET,
        stored_in: str = "",
    ) -> None:
        """`request_stream` names the queue's subjects (`nats_stream`), `stored_in` the stream
        that holds them when that is another (`ensure_streams`)."""
        self.js = js
        self.stream = stream
        self.request_stream = request_stream
        self.stored_in = stored_in or request_stream
        self.bodies = BodyStore(js, body_bucket)  # `large_body_bucket`: the only one it deletes in

    async def read(self, function: str = "") -> list[DeadLetter]:
        """Every dead letter, oldest first, optionally only one function's."""
        letters: list[DeadLetter] = []
        seq = 1
        while True:
            try:
                raw = await self.js.get_msg(self.stream, seq=seq, subject=">", next=True)
            except NotFoundError:
                break
            except (NatsError, TimeoutError) as exc:
                raise DeadLetterError(f"cannot read {self.stream}: {describe(exc)}") from None
            if raw.seq is None:
                break
            letter = DeadLetter(
                raw.seq, raw.subject or "", raw.data or b"", decode_headers(raw.headers)
            )
            if not function or letter.belongs_to(function):
                letters.append(letter)
            seq = raw.seq + 1
        return letters

    async def find(self, call_ids: Iterable[str]) -> tuple[list[DeadLetter], list[str]]:
        """The dead letters of these calls, and the call ids that have none."""
        wanted = list(dict.fromkeys(call_ids))
        letters = [d for d in await self.read() if d.call_id in wanted]
        found = {d.call_id for d in letters}
        return letters, [c for c in wanted if c not in found]

    async def replay(
        self, letters: Iterable[DeadLetter], on_replayed: Callable[[DeadLetter], None] | None = None
    ) -> int:
        """Put each message back on its original queue, then delete its dead letter."""
        count = 0
        for letter in letters:
            if DEAD_BODY_OMITTED in letter.headers:
                log.warning("dead letter %d not replayed: %s", letter.seq, letter.body_omitted)
                continue
            subject = letter.original_subject or self.request_stream
            headers = {"Nats-Msg-Id": f"replay:{self.stream}:{letter.seq}"}
            if letter.body_object:
                headers[BODY_OBJECT] = letter.body_object
            await publish(
                self.js,
                subject,
                letter.data,
                headers=headers,
                stream=self.stored_in,
            )
            await self._delete(letter)
            count += 1
            if on_replayed is not None:
                on_replayed(letter)
        return count

    async def purge(self, function: str = "") -> int:
        """Delete every dead letter (or one function's); returns how many were removed."""
        return await self.discard(await self.read(function))

    async def discard(self, letters: Iterable[DeadLetter]) -> int:
        """Delete these dead letters and their stored bodies; returns how many."""
        count = 0
        for letter in letters:
            await self._delete(letter)
            if letter.body_object:  # after the letter: a crash between leaves only an orphan
                await self.bodies.delete(letter.body_object, letter.data)
            count += 1
        return count

    async def _delete(self, letter: DeadLetter) -> None:
        try:
            await self.js.delete_msg(self.stream, letter.seq)
        except NotFoundError:
            pass  # already gone: a concurrent replay or purge did it
        except (NatsError, TimeoutError) as exc:
            raise DeadLetterError(
                f"cannot delete dead letter {letter.seq} from {self.stream}: {describe(exc)}"
            ) from None

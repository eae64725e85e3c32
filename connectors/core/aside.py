"""Giving a place back while waiting: how a source lets a message that waits for something
other than its place (its function's limit, a pause, a retry back-off) leave that place to
other messages meanwhile.

A source runs each message in a task of its own and calls `begin()` at the start of it; the
shared controller enters `step()` around each such wait. The first wait of a message gives
its place back (`give`), the last one to end takes it back (`take_back`, which may go past
the source's bound for a moment: invocations stay bounded by the controller's own slots).
Tasks a message makes (an event for several functions) share its token, so it gives up its
one place once. At most `most` messages wait aside at once; past that a message keeps its
place while it waits, as before, so a source never takes in more than its bound plus `most`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable


class _Token:
    __slots__ = ("owner", "waits")

    def __init__(self, owner: StepAside) -> None:
        self.owner = owner
        self.waits = 0  # this message's waits aside under way (0: it holds its place)


_current: contextvars.ContextVar[_Token | None] = contextvars.ContextVar(
    "ferry_aside_token", default=None
)


class StepAside:
    def __init__(
        self, give: Callable[[], None], take_back: Callable[[], None], most: int | None = None
    ) -> None:
        self.give = give
        self.take_back = take_back
        self.most = most
        self.aside = 0  # messages waiting aside now

    def begin(self) -> None:
        """The running task's message holds one place from now on."""
        _current.set(_Token(self))

    @contextlib.asynccontextmanager
    async def step(self) -> AsyncIterator[None]:
        """Around a wait of the running message: its place is someone else's meanwhile.
        Outside a message of this source, or past `most`, nothing changes."""
        token = _current.get()
        if token is None or token.owner is not self:
            yield
            return
        if not token.waits:
            if self.most is not None and self.aside >= self.most:
                yield
                return
            self.aside += 1
            self.give()
        token.waits += 1
        try:
            yield
        finally:
            token.waits -= 1
            if not token.waits:
                self.aside -= 1
                self.take_back()

"""Messages delivered ahead of a free slot, so a slot that frees starts its next call at once.

Without them a freed slot waits a pull round trip before its next message arrives: with a
100 ms function and 200 slots that idles a slot for every call. The buffer is bounded
(`prefetch`, beyond `max_inflight`) so other replicas still get work, and its messages are
marked in progress like running ones, so `ack_wait` never expires on a message that waits here.
"""

from __future__ import annotations

import collections

from nats.aio.msg import Msg

from queue_worker.progress import ProgressKeeper

AUTO_SHARE = 4  # `prefetch=auto`: one message ahead for every 4 slots ...
AUTO_LIMIT = 64  # ... and never more than this many


def auto_prefetch(max_inflight: int) -> int:
    """What `prefetch=auto` holds: none below 4 slots (one-at-a-time workers take nothing ahead)."""
    return min(AUTO_LIMIT, max_inflight // AUTO_SHARE)


class Prefetched:
    def __init__(self, limit: int, progress: ProgressKeeper) -> None:
        self.limit = limit
        self.progress = progress
        self._messages: collections.deque[Msg] = collections.deque()

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def room(self) -> int:
        return self.limit - len(self._messages)

    def offer(self, msg: Msg) -> bool:
        """Keep `msg` until a slot frees; False if the buffer is full."""
        if len(self._messages) >= self.limit:
            return False
        self._messages.append(msg)
        self.progress.hold(msg)
        return True

    def take(self) -> Msg | None:
        """The oldest waiting message, or None."""
        if not self._messages:
            return None
        msg = self._messages.popleft()
        self.progress.release(msg)
        return msg

    def take_all(self) -> list[Msg]:
        taken = list(self._messages)
        self._messages.clear()
        for msg in taken:
            self.progress.release(msg)
        return taken

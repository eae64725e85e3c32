"""Which partitions cannot move on now, for `/readyz` and `kafka_connector_stalled_partitions`.

A partition is stalled while one of its records waits on something that is not a function
call: to be tried again after an error nothing foresaw, or for a dead letter the broker has
not accepted. Its records stay uncommitted (nothing is skipped), but a partition that does
not move must not look healthy, so whoever waits holds the partition here while it waits.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator


class Stalls:
    def __init__(self) -> None:
        self._held: Counter[str] = Counter()  # "topic/partition": records waiting

    @contextlib.contextmanager
    def hold(self, partition: str) -> Iterator[None]:
        """`partition` counts as stalled until the block ends."""
        self._held[partition] += 1
        try:
            yield
        finally:
            self._held[partition] -= 1
            if not self._held[partition]:
                del self._held[partition]

    @property
    def partitions(self) -> frozenset[str]:
        return frozenset(self._held)

    def __len__(self) -> int:
        return len(self._held)

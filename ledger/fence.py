"""Whether every worker has seen a cancel marker: what lets a cancel answer "it will not run".

Workers check a call against the cancel markers they hold before each attempt, and learn of new
markers through one watch each (an ordered JetStream consumer on `cancel.>`). A marker stored at
stream sequence N has reached a worker once its watch has been handed N; the consumers' own
bookkeeping says so, so a cancel can wait for it instead of guessing how late a worker may be.
A consumer nobody listens to any more (a worker that died) is not waited for.

No watch at all means no worker runs, except just after the bucket was deleted and made again:
the workers notice within `REWATCH_SECONDS` and read every marker again, so a cancel on a bucket
that young waits for their watches to appear.
"""

from __future__ import annotations

import asyncio
import time

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from ledger.entries import CANCEL_PREFIX

FENCE_SECONDS = 4.0  # longest a cancel waits for the workers to be handed its marker
REWATCH_SECONDS = 3.0  # a worker watches a bucket made again within this (see worker_ledger)
POLL_SECONDS = 0.02
PAGE = 256  # consumers JetStream lists at once


async def markers_seen(js: JetStreamContext, bucket: str, sequence: int) -> bool:
    """True once every live cancel watch on `bucket` has been handed stream sequence
    `sequence`; False if one has not within `FENCE_SECONDS`."""
    stream = f"KV_{bucket}"
    watched = f"$KV.{bucket}.{CANCEL_PREFIX}>"
    try:
        async with asyncio.timeout(FENCE_SECONDS):
            young = await _made_lately(js, stream)
            while True:
                watches = [c for c in await _consumers(js, stream) if _watches(c, watched)]
                if watches and not any(_behind(c, sequence) for c in watches):
                    return True
                if not watches and not (young and await _made_lately(js, stream)):
                    return True  # no worker runs (one that starts reads the markers first)
                await asyncio.sleep(POLL_SECONDS)
    except (TimeoutError, NatsError):
        return False


async def _made_lately(js: JetStreamContext, stream: str) -> bool:
    """Whether the bucket was made less than `REWATCH_SECONDS` ago (by this host's clock)."""
    made = (await js.stream_info(stream)).created
    return made is not None and time.time() - made.timestamp() < REWATCH_SECONDS


def _watches(consumer: ConsumerInfo, watched: str) -> bool:
    """A worker's cancel watch that someone still listens to (not one of a worker that died)."""
    config = consumer.config
    filters = [config.filter_subject] if config.filter_subject else (config.filter_subjects or [])
    return watched in filters and bool(consumer.push_bound)


def _behind(consumer: ConsumerInfo, sequence: int) -> bool:
    delivered = consumer.delivered.stream_seq if consumer.delivered else 0
    return (delivered or 0) < sequence


async def _consumers(js: JetStreamContext, stream: str) -> list[ConsumerInfo]:
    found: list[ConsumerInfo] = []
    while True:
        page = await js.consumers_info(stream, offset=len(found) or None)
        found.extend(page)
        if len(page) < PAGE:
            return found

"""The worker's side of pausing by hand: follow the paused functions in NATS
(`asyncq.function_state`) and hand them to the fair scheduler by subject, so a paused
function's lane pulls nothing; running calls end as usual."""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext

from asyncq.function_state import FunctionStates
from asyncq.layout import function_subject
from connectors.core.errors import StartupError
from connectors.core.supervision import cancel_and_wait
from connectors.jetstream.setup import PATIENCE_SECONDS
from queue_worker.breaker_reports import BreakerReports
from queue_worker.config import QueueWorkerConfig
from queue_worker.fair import FairScheduler

log = logging.getLogger("ferry.queue_worker")

# a worker starts only once it knows what is paused; as patient as the rest of start-up
# with a JetStream that answers late (connectors.jetstream.setup.PATIENCE_SECONDS)
SYNC_SECONDS = PATIENCE_SECONDS


class PauseFollower:
    def __init__(self, config: QueueWorkerConfig, scheduler: FairScheduler) -> None:
        self.config = config
        self.scheduler = scheduler
        self.names: frozenset[str] = frozenset()
        self.tasks: list[asyncio.Task[None]] = []
        self.reports: BreakerReports | None = None

    async def start(self, js: JetStreamContext) -> None:
        nats = self.config.nats
        states = await FunctionStates.open(
            js, nats.function_state_bucket, nats.nats_stream_replicas
        )
        self.reports = BreakerReports(states)
        self.reports.start()
        self.scheduler.breaker_report = self.reports.changed
        synced = asyncio.Event()
        task = asyncio.create_task(states.follow(self.changed, synced), name="paused-functions")
        self.tasks.append(task)
        try:
            async with asyncio.timeout(SYNC_SECONDS):
                await synced.wait()
        except TimeoutError:
            raise StartupError(
                f"cannot read the paused functions from {nats.function_state_bucket}"
            ) from None

    def changed(self, names: frozenset[str]) -> None:
        for name in sorted(names - self.names):
            log.warning("function %s is paused: its calls wait until it is resumed", name)
        for name in sorted(self.names - names):
            log.warning("function %s is resumed", name)
        self.names = names
        stream, queue = self.config.nats.nats_stream, self.config.queue_name
        self.scheduler.pause(frozenset(function_subject(stream, queue, name) for name in names))

    async def stop(self) -> None:
        if self.reports is not None:
            await self.reports.stop()
        await cancel_and_wait(*self.tasks)
        self.tasks.clear()

"""`ferry cron-connector`: invoke functions annotated `topic: cron-function` on their schedules.

The topic map (re-read every `rebuild_interval`) says which functions have which schedules;
each (function, schedule) is followed by one `Job` task, started and stopped as annotations
change. A bad schedule on one function is logged and counted once and never stops the others.

SIGTERM stops every firing at once (`Firer.stop`, `Controller.stop`: read after every wait,
so nothing is invoked after it even where a cancellation was swallowed) and every wait of the
drain is bounded, so the process exits within `graceful_timeout` and a second or two.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from prometheus_client import CollectorRegistry

from connectors.core.controller import Controller
from connectors.core.drain import bounded, finish_or_cancel
from connectors.core.supervision import until_stopped
from connectors.core.topicmap import FunctionInfo, TopicMap
from connectors.cron.claims import JetStreamClaims, LocalClaims, SlotClaims
from connectors.cron.clock import Clock, SystemClock
from connectors.cron.config import (
    CRON_TOPIC,
    SCHEDULE_ANNOTATION,
    TIMEZONE_ANNOTATION,
    CronConnectorConfig,
)
from connectors.cron.firer import Firer
from connectors.cron.jobs import Job
from connectors.cron.leases import BusyLeases
from connectors.cron.metrics import CronMetrics
from connectors.cron.schedule import Schedule, ScheduleError, parse_schedules, shown
from connectors.jetstream.connect import NatsConnection

log = logging.getLogger("ferry.cron")

CONNECTOR = "cron-connector"
JobKey = tuple[str, str, str]
CANCEL_WAIT = 1.0  # for calls cut short at the drain's bound to release their leases
CLOSE_WAIT = 1.0  # for each client (NATS, the gateway's) to close


class CronConnector:
    name = CONNECTOR

    def __init__(self, config: CronConnectorConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.registry = CollectorRegistry()
        self.controller = Controller.build(
            CONNECTOR, config, self.registry, on_rebuild=self._rebuilt
        )
        self.metrics = self.controller.metrics
        self.gateway = self.controller.gateway
        self.topics = self.controller.topics
        self.cron_metrics = CronMetrics(self.registry)
        self.claims: SlotClaims = LocalClaims()
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.leases = BusyLeases(self.claims, self.owner)
        self.firer = Firer(
            controller=self.controller,
            claims=self.claims,
            leases=self.leases,
            metrics=self.cron_metrics,
            clock=self.clock,
            forbid=config.cron.concurrency_policy == "forbid",
            owner=self.owner,
        )
        self.jobs: dict[JobKey, tuple[Job, asyncio.Task[None]]] = {}
        self._reported: dict[str, tuple[str, str]] = {}
        self._stopping = asyncio.Event()
        self._running = False
        self._started = False
        self._nats: NatsConnection | None = None
        self._renewer: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        cron, nats = self.config.cron, self.config.nats
        if nats.enabled:
            claims = await JetStreamClaims.open(nats, cron.cron_kv_bucket)
            self._nats = claims.connection
            self.claims = self.firer.claims = self.leases.claims = claims
        await self.topics.refresh()
        log.info(
            "cron connector: %s, concurrency_policy=%s, starting_deadline=%gs via %s",
            f"claims in {cron.cron_kv_bucket} at {nats.shown_servers}"
            if nats.enabled
            else "single replica",
            cron.concurrency_policy,
            cron.starting_deadline,
            self.config.gateway.gateway_url,
        )
        self._started = True

    def ready(self) -> bool:
        nats_ok = self._nats is None or self._nats.connected
        return (
            self._started and nats_ok and self.topics.rebuilt_once and not self._stopping.is_set()
        )

    def stop(self) -> None:
        """Fire nothing more from now on: no new call, no retry (must not block)."""
        self._stopping.set()
        self._running = False
        self.firer.stop()
        self.controller.stop()

    async def run(self) -> None:
        self._running = True
        self._reconcile(self.topics.current)
        refresher = asyncio.create_task(self.topics.run(), name="topic-map")
        watched = [refresher]
        if self._nats is not None and self.firer.forbid:
            self._renewer = asyncio.create_task(self.leases.run(), name="lease-renewer")
            watched.append(self._renewer)  # it runs on through the drain, while calls do
        try:
            until = until_stopped(self._stopping, watched)
            if self._nats is None:
                await until
            else:  # raises NatsLost if NATS closes the connection for good
                await self._nats.while_open(until)
        finally:
            refresher.cancel()
            await asyncio.wait({refresher}, timeout=CLOSE_WAIT)

    async def drain(self, timeout: float) -> None:
        """Stop every schedule at once, let running calls finish within `timeout`, then cut
        them short; every wait is bounded, whatever a library does with a cancellation."""
        self.stop()
        jobs = [task for _, task in self.jobs.values()]
        self.jobs.clear()
        for task in jobs:
            task.cancel()  # one that swallows it still ends at its next step, firing nothing
        if self.firer.tasks:
            log.info("waiting for %d running calls", len(self.firer.tasks))
        unfinished = await finish_or_cancel(
            {*jobs, *self.firer.tasks}, timeout, cancel_wait=CANCEL_WAIT
        )
        if unfinished:
            log.warning("%d schedules or calls cut short at the %gs bound", unfinished, timeout)
        if self.firer.not_fired:
            log.info(
                "%d due slots not invoked because of the stop (cron_slots_skipped_total, "
                'reason="shutdown")',
                self.firer.not_fired,
            )
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.wait({self._renewer}, timeout=CLOSE_WAIT)
        await bounded(self.claims.close(), CLOSE_WAIT, "closing the NATS connection")
        await bounded(self.gateway.close(), CLOSE_WAIT, "closing the gateway client")

    # -- schedules -------------------------------------------------------------------------

    def _rebuilt(self, topic_map: TopicMap) -> None:
        if self._running and not self._stopping.is_set():
            self._reconcile(topic_map)

    def _wanted(self, topic_map: TopicMap) -> dict[JobKey, tuple[FunctionInfo, Schedule]]:
        wanted: dict[JobKey, tuple[FunctionInfo, Schedule]] = {}
        for fn in topic_map.match(CRON_TOPIC):
            text = fn.annotations.get(SCHEDULE_ANNOTATION, "")
            zone = fn.annotations.get(TIMEZONE_ANNOTATION) or self.config.cron.default_timezone
            try:
                schedules = parse_schedules(text, zone)
            except ScheduleError as exc:
                if self._reported.get(fn.qualified) != (text, zone):
                    self._reported[fn.qualified] = (text, zone)
                    self.cron_metrics.invalid.labels(fn.qualified).inc()
                    log.error("%s: schedule %s not used: %s", fn.qualified, shown(text), exc)
                continue
            self._reported.pop(fn.qualified, None)
            for schedule in schedules:
                wanted[(fn.qualified, schedule.expression, schedule.zone_name)] = (fn, schedule)
        return wanted

    def _reconcile(self, topic_map: TopicMap) -> None:
        wanted = self._wanted(topic_map)
        for key in [k for k in self.jobs if k not in wanted]:
            job, task = self.jobs.pop(key)
            task.cancel()
            log.info("%s: schedule %r removed", key[0], key[1])
        for key, (fn, schedule) in wanted.items():
            if key in self.jobs and not self.jobs[key][1].done():
                self.jobs[key][0].function = fn  # annotations (e.g. retries) may have changed
                continue
            job = Job(
                fn,
                schedule,
                firer=self.firer,
                clock=self.clock,
                starting_deadline=self.config.cron.starting_deadline,
            )
            self.jobs[key] = (job, asyncio.create_task(job.run(), name=f"cron {key}"))
            log.info("%s: following %r (%s)", fn.qualified, schedule.expression, schedule.zone_name)
        self.cron_metrics.jobs.set(len(self.jobs))

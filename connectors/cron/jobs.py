"""Following one schedule of one function, and deciding whether a due slot is invoked here.

A `Job` sleeps on the injected clock until its next slot. When it wakes it looks at every slot
that came due meanwhile: if the latest is on time (within `MISFIRE_GRACE`, or within
`starting_deadline` when that is longer) it fires, and every other one is counted as missed,
so a process that was suspended or a clock that jumped never causes a backlog storm.
`Firer` then applies the concurrency policy and the replica claim before invoking.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connectors.core.controller import Controller, Event
from connectors.core.topicmap import FunctionInfo
from connectors.cron.claims import ClaimError, SlotClaims
from connectors.cron.clock import Clock
from connectors.cron.config import CRON_TOPIC
from connectors.cron.metrics import CronMetrics
from connectors.cron.schedule import Schedule, ScheduleError, next_slot, slots_between

log = logging.getLogger("ferry.cron")

MISFIRE_GRACE = timedelta(seconds=2)
MAX_DUE = 10_000
BUSY_MARGIN_SECONDS = 5.0


def _ms(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


def rfc3339(instant: datetime) -> str:
    text = instant.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z").replace(".000Z", "Z")


@dataclass(frozen=True)
class Slot:
    function: FunctionInfo
    schedule: Schedule
    at: datetime

    @property
    def unix_ms(self) -> int:
        return _ms(self.at)

    @property
    def call_id(self) -> str:
        return f"{self.function.qualified}:{self.unix_ms}"

    def event(self) -> Event:
        return Event(
            topic=CRON_TOPIC,
            body=b"",
            headers=(
                ("X-Cron-Schedule", self.schedule.expression),
                ("X-Cron-Scheduled-Time", rfc3339(self.at)),
                ("X-Cron-Time-Zone", self.schedule.zone_name),
            ),
            call_id=self.call_id,
        )


class Firer:
    def __init__(
        self,
        *,
        controller: Controller,
        claims: SlotClaims,
        metrics: CronMetrics,
        clock: Clock,
        forbid: bool,
        owner: str,
        upstream_timeout: float,
    ) -> None:
        self.controller = controller
        self.claims = claims
        self.metrics = metrics
        self.clock = clock
        self.forbid = forbid and not controller.settings.asynchronous_invocation
        self.owner = owner
        self.upstream_timeout = upstream_timeout
        self.running: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()

    async def fire(self, slot: Slot) -> None:
        name = slot.function.qualified
        # The claim comes first: only the replica that owns the slot asks whether the previous
        # call still runs. Checked the other way round, a replica could see the busy mark of
        # this very slot's call, started by another replica, and report a skip that never was.
        try:
            won = await self.claims.claim(name, slot.unix_ms, self.owner)
            if won and self.forbid and await self._busy(name):
                self.skip(slot.function, "forbid")
                log.warning(
                    "%s: skipping the slot at %s, its previous call still runs",
                    name,
                    rfc3339(slot.at),
                )
                return
        except ClaimError as exc:
            self.skip(slot.function, "claim_error")
            log.error("%s: skipping the slot at %s: %s", name, rfc3339(slot.at), exc)
            return
        if not won:
            self.skip(slot.function, "claimed_elsewhere")
            log.debug("%s: slot at %s fired by another replica", name, rfc3339(slot.at))
            return
        self.running[name] += 1
        if self.forbid:
            await self.claims.mark_busy(name, self._busy_until(slot.function))
        task = asyncio.create_task(self._invoke(slot))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _busy(self, name: str) -> bool:
        if self.running[name]:
            return True
        return await self.claims.busy_elsewhere(name, _ms(self.clock.now()))

    def _busy_until(self, function: FunctionInfo) -> int:
        """When a sync call with all its retries must be over, so a stale mark expires."""
        policy = self.controller.policy_for(function)
        longest = (
            self.upstream_timeout * policy.max_attempts
            + policy.max_wait * (policy.max_attempts - 1)
            + BUSY_MARGIN_SECONDS
        )
        return _ms(self.clock.now()) + int(longest * 1000)

    def skip(self, function: FunctionInfo, reason: str, count: int = 1) -> None:
        self.metrics.skipped.labels(function.qualified, reason).inc(count)

    async def _invoke(self, slot: Slot) -> None:
        name = slot.function.qualified
        try:
            self.metrics.delay.observe(max((self.clock.now() - slot.at).total_seconds(), 0.0))
            self.metrics.fired.labels(name).inc()
            await self.controller.deliver(slot.event(), slot.function)
        except asyncio.CancelledError:
            log.warning("%s: call %s cut short by shutdown", name, slot.call_id)
            raise
        finally:
            self.running[name] -= 1
            if self.forbid and not self.running[name]:
                await self.claims.mark_idle(name)


class Job:
    def __init__(
        self,
        function: FunctionInfo,
        schedule: Schedule,
        *,
        firer: Firer,
        clock: Clock,
        starting_deadline: float,
    ) -> None:
        self.function = function
        self.schedule = schedule
        self.firer = firer
        self.clock = clock
        self.deadline = timedelta(seconds=starting_deadline)

    async def run(self) -> None:
        try:
            await self._run()
        except ScheduleError as exc:
            self.firer.metrics.invalid.labels(self.function.qualified).inc()
            log.error(
                "%s: schedule %r stopped: %s",
                self.function.qualified,
                self.schedule.expression,
                exc,
            )
        except Exception:
            # a bug must not pass silently: this schedule stops loudly (it is started again at
            # the next topic-map rebuild) and the others go on
            log.exception(
                "%s: schedule %r stopped", self.function.qualified, self.schedule.expression
            )

    async def _run(self) -> None:
        now = self.clock.now()
        if self.deadline:
            recent = slots_between(self.schedule, now - self.deadline, now)
            if recent:
                log.info(
                    "%s: firing the slot at %s missed before start",
                    self.function.qualified,
                    rfc3339(recent[-1]),
                )
                await self.firer.fire(Slot(self.function, self.schedule, recent[-1]))
        cursor = now
        while True:
            slot = next_slot(self.schedule, cursor)
            await self.clock.sleep_until(slot)
            now = self.clock.now()
            due = slots_between(self.schedule, slot, now, limit=MAX_DUE)
            latest = due[-1] if due else slot
            missed = len(due) - 1
            if now - latest <= max(self.deadline, MISFIRE_GRACE):
                await self.firer.fire(Slot(self.function, self.schedule, latest))
            else:
                missed += 1
            if missed > 0:
                self.firer.skip(self.function, "missed", missed)
                log.warning(
                    "%s: %d slot(s) of %r missed (process suspended or clock jumped)",
                    self.function.qualified,
                    missed,
                    self.schedule.expression,
                )
            cursor = max(now, slot)

"""Following one schedule of one function.

A `Job` sleeps on the injected clock until its next slot. When it wakes it looks at every slot
that came due meanwhile: if the latest is on time (within `MISFIRE_GRACE`, or within
`starting_deadline` when that is longer) it fires, and every other one is counted as missed,
so a process that was suspended or a clock that jumped never causes a backlog storm.
`Firer` then applies the replica claim and the concurrency policy before invoking. A job ends
when the firer stops, even if the cancellation meant to end it was swallowed on the way.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from connectors.core.topicmap import FunctionInfo
from connectors.cron.clock import Clock
from connectors.cron.firer import Firer, Slot, rfc3339
from connectors.cron.schedule import Schedule, ScheduleError, next_slot, slots_between

log = logging.getLogger("ferry.cron")

MISFIRE_GRACE = timedelta(seconds=2)
MAX_DUE = 10_000


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
        while not self.firer.stopping:
            slot = next_slot(self.schedule, cursor)
            await self.clock.sleep_until(slot)
            if self.firer.stopping:
                return
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

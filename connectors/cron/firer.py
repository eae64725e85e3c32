"""Deciding whether a due slot is invoked here, and invoking it.

The slot's claim comes first (one replica per slot), then, under `forbid`, the function's busy
lease (`leases.py`), then the call. Once the connector is stopping nothing new is invoked: the
flag is read after every wait, so a slot whose claim was on its way to NATS when SIGTERM came
is dropped there (counted as `shutdown`) even if the NATS client swallowed the cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from connectors.core.controller import Controller
from connectors.core.delivery import Abandoned, Event, NotStarted
from connectors.core.topicmap import FunctionInfo
from connectors.cron.claims import ClaimError, Lease, SlotClaims
from connectors.cron.clock import Clock
from connectors.cron.config import CRON_TOPIC
from connectors.cron.leases import BusyLeases
from connectors.cron.metrics import CronMetrics
from connectors.cron.schedule import Schedule

log = logging.getLogger("ferry.cron")

SKIP_REPORT_EVERY = 60.0  # seconds between two log lines about one function's forbid skips
REPORTS_REMEMBERED = 10_000


def outcome_text(status: int | None, ok: bool) -> str:
    """How a slot's call ended, in a few characters: its status, or why it has none."""
    if status is None:
        return "failed (no answer)"
    return str(status) if ok else f"{status} (failed)"


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
        return int(self.at.timestamp() * 1000)

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
        leases: BusyLeases,
        metrics: CronMetrics,
        clock: Clock,
        forbid: bool,
        owner: str,
    ) -> None:
        self.controller = controller
        self.claims = claims
        self.leases = leases
        self.metrics = metrics
        self.clock = clock
        self.forbid = forbid and not controller.settings.asynchronous_invocation
        self.owner = owner
        self.running: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.not_fired = 0  # slots dropped because the connector was stopping
        self._reported: dict[str, tuple[float, int]] = {}  # function -> (logged at, unlogged)

    def stop(self) -> None:
        """Invoke nothing more (calls already made run on)."""
        self.stopping = True

    async def fire(self, slot: Slot) -> None:
        if self.stopping:
            return
        name = slot.function.qualified
        lease: Lease | None = None
        # The claim comes first: only the replica that owns the slot asks whether the previous
        # call still runs. Checked the other way round, a replica could see the busy lease of
        # this very slot's call, started by another replica, and report a skip that never was.
        try:
            won = await self.claims.claim(name, slot.unix_ms, self.owner)
            if won and self.forbid and not self.stopping:
                lease = self._held_here(name) or await self.leases.take(name)
                if not lease.taken:
                    self._forbidden(slot, lease)
                    return
        except ClaimError as exc:
            self.skip(slot.function, "claim_error")
            log.error("%s: skipping the slot at %s: %s", name, rfc3339(slot.at), exc)
            return
        if not won:
            self.skip(slot.function, "claimed_elsewhere")
            log.debug("%s: slot at %s fired by another replica", name, rfc3339(slot.at))
            return
        if self.stopping:
            if lease is not None:
                await self.leases.release(name)
            self._not_fired(slot, "the connector is stopping")
            return
        self.running[name] += 1
        task = asyncio.create_task(self._invoke(slot))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _held_here(self, name: str) -> Lease | None:
        return Lease(holder=f"{self.owner} (this replica)") if self.running[name] else None

    def skip(self, function: FunctionInfo, reason: str, count: int = 1) -> None:
        self.metrics.skipped.labels(function.qualified, reason).inc(count)

    def _forbidden(self, slot: Slot, lease: Lease) -> None:
        """Counted every time; logged at most once a minute per function, with the number of
        skips since the last line (a function that runs long on a fast schedule would
        otherwise write a line per slot)."""
        name = slot.function.qualified
        self.skip(slot.function, "forbid")
        now = time.monotonic()
        logged_at, unlogged = self._reported.get(name, (-SKIP_REPORT_EVERY, 0))
        if now - logged_at < SKIP_REPORT_EVERY:
            self._reported[name] = (logged_at, unlogged + 1)
            return
        if len(self._reported) >= REPORTS_REMEMBERED:
            self._reported.clear()
        self._reported[name] = (now, 0)
        until = datetime.fromtimestamp(lease.until_ms / 1000, UTC) if lease.until_ms else None
        log.warning(
            "%s: skipping the slot at %s, its previous call still runs (in %s%s)%s",
            name,
            rfc3339(slot.at),
            lease.holder,
            f", lease until {rfc3339(until)}" if until else "",
            f"; {unlogged} more slots skipped since the last report" if unlogged else "",
        )

    def _not_fired(self, slot: Slot, why: str) -> None:
        """Counted; logged one by one only at debug (hundreds can come due as the stop does):
        the drain says how many in one line."""
        self.skip(slot.function, "shutdown")
        self.not_fired += 1
        log.debug("%s: slot at %s not invoked: %s", slot.function.qualified, rfc3339(slot.at), why)

    async def _invoke(self, slot: Slot) -> None:
        name = slot.function.qualified
        invoked = True
        try:
            self.metrics.delay.observe(max((self.clock.now() - slot.at).total_seconds(), 0.0))
            delivery = await self.controller.deliver(slot.event(), slot.function)
            await self.claims.record_outcome(
                name, slot.unix_ms, self.owner, outcome_text(delivery.result.status, delivery.ok)
            )
        except NotStarted:
            invoked = False
            self._not_fired(slot, "the connector stopped before a free max_inflight slot")
        except Abandoned as exc:
            log.warning("%s: call %s not retried: %s", name, slot.call_id, exc)
        except asyncio.CancelledError:
            log.warning("%s: call %s cut short by shutdown", name, slot.call_id)
            raise
        finally:
            if invoked:
                self.metrics.fired.labels(name).inc()
            self.running[name] -= 1
            if self.forbid and not self.running[name]:
                await self.leases.release(name)

"""The busy leases this replica holds, renewed while their calls run.

Under `concurrency_policy=forbid` a replica that starts a sync call takes `busy.{function}`
for `LEASE_SECONDS` and renews it every `RENEW_EVERY` seconds until the call ends. A replica
that dies mid-call stops renewing, so the function is free again within `LEASE_SECONDS`,
however long its calls may take (a mark that had to outlast every retry of the longest call
blocked a function for half an hour after its holder was killed).

Lease instants are real wall-clock time, not the schedule's clock: they are about whether a
process is alive, and replicas compare them, so their clocks must agree to well within
`LEASE_SECONDS` (as they must for their slots anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time

from connectors.cron.claims import ClaimError, Lease, SlotClaims, lease_value

log = logging.getLogger("ferry.cron")

LEASE_SECONDS = 6.0
RENEW_EVERY = 2.0


def wall_ms() -> int:
    return int(time.time() * 1000)


class BusyLeases:
    def __init__(
        self,
        claims: SlotClaims,
        owner: str,
        *,
        lease_seconds: float = LEASE_SECONDS,
        renew_every: float = RENEW_EVERY,
    ) -> None:
        self.claims = claims
        self.owner = owner
        self.lease_ms = int(lease_seconds * 1000)
        self.renew_every = renew_every
        self.held: dict[str, int] = {}  # function -> the revision of our lease

    async def take(self, function: str) -> Lease:
        """Our lease on `function`, or who holds it; ClaimError if NATS cannot answer."""
        now = wall_ms()
        lease = await self.claims.take_lease(function, self.owner, now + self.lease_ms, now)
        if lease.taken:
            self.held[function] = lease.revision
        return lease

    async def release(self, function: str) -> None:
        revision = self.held.pop(function, 0)
        if revision:
            await self.claims.release_lease(function, revision)

    async def run(self) -> None:
        """Renew every held lease every `renew_every` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.renew_every)
            if self.held:
                await self.renew()

    async def renew(self) -> None:
        value = lease_value(self.owner, wall_ms() + self.lease_ms)
        held = list(self.held.items())
        answers = await asyncio.gather(
            *(self.claims.renew_lease(fn, revision, value) for fn, revision in held),
            return_exceptions=True,
        )
        failed: list[ClaimError] = []
        for (function, revision), answer in zip(held, answers, strict=True):
            if self.held.get(function) != revision:
                continue  # released meanwhile
            if isinstance(answer, ClaimError):
                failed.append(answer)
            elif isinstance(answer, BaseException):
                raise answer
            elif answer:
                self.held[function] = answer
            else:
                del self.held[function]
                log.warning(
                    "%s: its busy lease was taken over while its call runs here (NATS could "
                    "not be reached for %gs?); other replicas may start it meanwhile",
                    function,
                    self.lease_ms / 1000,
                )
        if failed:  # one line a round, however many leases (NATS is down for all of them)
            log.warning(
                "could not renew %d busy leases (trying again in %gs): %s",
                len(failed),
                self.renew_every,
                failed[0],
            )

"""The worker's breaker changes, written to the function-state bucket
(`asyncq.function_state`) so the gateway can say why a queued call waits.

A change is noted at once (`changed`, called from the lane, never blocking) and written by one
task; only the last change per function is kept until written, and at most `MAX_PENDING`
functions wait to be written (past that a change is dropped and logged: the state is still in
the metrics and the logs). A write that fails is logged once and given up: it never stops a
call.
"""

from __future__ import annotations

import asyncio
import logging

from nats.errors import Error as NatsError

from asyncq.function_state import FunctionStates
from connectors.core.breaker import Change
from connectors.core.supervision import cancel_and_wait

log = logging.getLogger("ferry.queue_worker.breaker")

MAX_PENDING = 1000


class BreakerReports:
    def __init__(self, states: FunctionStates) -> None:
        self.states = states
        self.pending: dict[str, tuple[str, str]] = {}  # function -> (state, reason)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="breaker-reports")

    def changed(self, function: str, change: Change) -> None:
        if function not in self.pending and len(self.pending) >= MAX_PENDING:
            log.warning("breaker of %s: change not reported (too many waiting)", function)
            return
        state = change.state.name.lower().replace("_", "-")
        self.pending[function] = (state, change.reason)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                function = next(iter(self.pending))
                state, reason = self.pending.pop(function)
                try:
                    await self.states.report_breaker(function, state, reason)
                    self._warned = False
                except (NatsError, TimeoutError) as exc:
                    if not self._warned:
                        log.warning("cannot report the breaker of %s: %r", function, exc)
                        self._warned = True

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

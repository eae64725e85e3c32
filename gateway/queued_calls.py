"""The front door's part of the call ledger: a `queued` entry for each call it accepts.

Written with `create` beside the JetStream publish, never awaited, so accepting a call waits
on nothing more than before; if a worker already wrote a later state, the create fails
harmlessly. A call whose publish failed has its entry removed again (the 503 says so).
"""

from __future__ import annotations

from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from asyncq.codec import QueueRequest
from ledger.delayed import scheduled_value
from ledger.entries import CallState, entry_key
from ledger.store import queued_value
from ledger.writer import Change, LedgerMetrics, LedgerWriter, Op

GATHER_SECONDS = 0.001  # a busy front door's entries leave together, one answer for many


class QueuedCalls:
    def __init__(self, nc: Client, bucket: str, registry: CollectorRegistry) -> None:
        self.metrics = LedgerMetrics(registry, "gateway", [CallState.QUEUED, CallState.SCHEDULED])
        self.writer = LedgerWriter(
            nc,
            bucket,
            on_failure=self.metrics.write_failures.inc,
            on_drop=self.metrics.dropped.inc,
            gather=GATHER_SECONDS,
        )

    async def start(self) -> None:
        await self.writer.start()

    async def close(self) -> None:
        await self.writer.close()

    def queued(self, request: QueueRequest, due: float | None = None) -> None:
        """`queued`, or `scheduled` with its due time for a delayed call."""
        if not request.call_id:
            return
        if due is None:
            self.metrics.states.inc(CallState.QUEUED)
            entry = queued_value(request)
        else:
            self.metrics.states.inc(CallState.SCHEDULED)
            entry = scheduled_value(request, due)
        self.writer.submit(entry_key(request.call_id), Change(Op.CREATE, entry))

    def not_queued(self, request: QueueRequest) -> None:
        if request.call_id:
            self.writer.submit(entry_key(request.call_id), Change(Op.DELETE))

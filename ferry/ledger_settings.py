"""The settings of shell commands that use the call ledger: NATS's, plus the ledger's."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.core.settings import group
from queue_worker.config import QueueNatsSettings
from queue_worker.ledger import CallLedgerSettings


@dataclass(frozen=True)
class LedgerCommandSettings:
    nats: QueueNatsSettings = group(QueueNatsSettings)
    ledger: CallLedgerSettings = group(CallLedgerSettings)

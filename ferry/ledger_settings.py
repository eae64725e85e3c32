"""The settings of shell commands that use the call ledger: NATS's, plus the ledger's.

Each part is declared with its component (`asyncq.settings`, `ledger.settings`); this is only
the shell's grouping of them into one config object for `ferry calls` and `ferry publish`,
so it lives with the shell."""

from __future__ import annotations

from dataclasses import dataclass

from asyncq.settings import QueueNatsSettings
from connectors.core.settings import group
from ledger.settings import CallLedgerSettings


@dataclass(frozen=True)
class LedgerCommandSettings:
    nats: QueueNatsSettings = group(QueueNatsSettings)
    ledger: CallLedgerSettings = group(CallLedgerSettings)

"""Where and how long the call ledger keeps calls: the settings the front door, the worker and
the shell commands share, declared once with the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.core.settings import int_in, parse_bool, retention, setting
from ledger.entries import (
    DEFAULT_BUCKET,
    DEFAULT_RESULT_MAX_BYTES,
    DEFAULT_TTL_SECONDS,
    RESULT_MAX_BYTES_LIMIT,
)


@dataclass(frozen=True)
class CallLedgerSettings:
    """Where and how long the ledger keeps calls; shared by the gateway, worker and shell."""

    call_ledger: bool = setting(
        "call_ledger", True, "record every async call's state in a key-value bucket", parse_bool
    )
    call_ledger_bucket: str = setting(
        "call_ledger_bucket", DEFAULT_BUCKET, "key-value bucket of the call ledger"
    )
    call_ledger_ttl: float = setting(
        "call_ledger_ttl",
        DEFAULT_TTL_SECONDS,
        "how long a call's entry is kept after its last change",
        retention,
        shown="24h",
    )
    call_result_max_bytes: int = setting(
        "call_result_max_bytes",
        DEFAULT_RESULT_MAX_BYTES,
        "largest function answer kept with its call (0: keep none)",
        int_in(0, RESULT_MAX_BYTES_LIMIT),
    )

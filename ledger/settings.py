"""Where and how long the call ledger keeps calls: the settings the front door, the worker and
the shell commands share, declared once with the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.core.settings import int_in, parse_bool, retention, setting
from ledger.entries import (
    DEFAULT_BUCKET,
    DEFAULT_MAX_BYTES,
    DEFAULT_RESULT_MAX_BYTES,
    DEFAULT_TTL_SECONDS,
    MIN_MAX_BYTES,
    RESULT_MAX_BYTES_LIMIT,
    RESULT_SHARE,
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
    call_ledger_max_bytes: int = setting(
        "call_ledger_max_bytes",
        DEFAULT_MAX_BYTES,
        "most bytes of JetStream storage the ledger's bucket may take (reserved on the server);"
        " when full, the oldest entries go first",
        int_in(MIN_MAX_BYTES),
    )
    call_result_max_bytes: int = setting(
        "call_result_max_bytes",
        DEFAULT_RESULT_MAX_BYTES,
        f"largest function answer kept with its call (0: keep none; never more than"
        f" 1/{RESULT_SHARE} of call_ledger_max_bytes)",
        int_in(0, RESULT_MAX_BYTES_LIMIT),
    )

    @property
    def result_limit(self) -> int:
        """The largest answer actually kept: `call_result_max_bytes`, but at most a share of
        the bucket, so a run of big answers cannot push every other entry out at once."""
        return min(self.call_result_max_bytes, self.call_ledger_max_bytes // RESULT_SHARE)

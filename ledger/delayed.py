"""Cancelling a call that may still wait as a delayed call (`asyncq.schedule`).

The ledger's cancel (entry `cancelled`, the marker the workers watch) is not enough alone: a
call may be delayed for longer than the ledger keeps its entry and marker. So the waiting
message is removed from the stream too, and a delayed call whose entry has expired can still
be cancelled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asyncq.codec import QueueRequest
from ledger.entries import CallEntry, CallState, rfc3339
from ledger.queued import queued_entry
from ledger.store import CancelAnswer, LedgerStore

# removes a delayed call not yet due: the function it was for, or None if none was waiting
Unschedule = Callable[[str], Awaitable[str | None]]


async def cancel_call(
    store: LedgerStore, call_id: str, unschedule: Unschedule | None
) -> tuple[CancelAnswer, CallEntry]:
    """`store.cancel`, and the call's waiting message (if delayed) removed from the stream.

    A delayed call removed before it fired can never run, whatever the workers have heard:
    the answer is then CANCELLED (with the function named, if the ledger had no entry)."""
    answer, entry = await store.cancel(call_id)
    if unschedule is None or answer is CancelAnswer.TOO_LATE:
        return answer, entry
    function = await unschedule(call_id)
    if function is None:
        return answer, entry
    if not entry.function:
        entry.function = function
    return CancelAnswer.CANCELLED, entry


def scheduled_value(request: QueueRequest, due: float) -> bytes:
    """The entry of a delayed call just stored: `scheduled`, due at `next_attempt_at`."""
    entry = queued_entry(request)
    entry.state = CallState.SCHEDULED
    entry.next_attempt_at = rfc3339(due)
    return entry.encode()

"""Reading the call ledger in tests: one bucket per test, entries as the API shows them."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js import JetStreamContext

from ledger.bucket import open_bucket
from ledger.entries import CallEntry, entry_key
from ledger.settings import CallLedgerSettings
from ledger.sheets import SHEET_PREFIX, sheet_entries
from ledger.state_sheets import STATE_PREFIX, state_entries
from ledger.store import LedgerStore
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest
from tests.support.subscriptions import at_server


class LedgerUnderTest:
    """A ledger bucket unique to one test, and a record of every state each call went through."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.bucket = f"faas-calls-{uuid.uuid4().hex[:8]}"
        self.states: dict[str, list[str]] = {}
        # every entry written for a call, as (state, callback outcome), repeats included
        self.written: dict[str, list[tuple[str, str | None]]] = {}
        self._sub: Any = None
        self._sheets: Any = None
        self._states: Any = None
        self.store: LedgerStore | None = None

    def env(self, **overrides: str) -> dict[str, str]:
        return {"call_ledger_bucket": self.bucket, **overrides}

    async def setup(self) -> LedgerUnderTest:
        settings = CallLedgerSettings(call_ledger_bucket=self.bucket)
        kv = await open_bucket(self.js, settings, replicas=1)
        self.store = LedgerStore(kv, self.js, self.bucket)
        # every write as it goes to the bucket, on a plain subscription to the bucket's subjects
        self._sub = await self.js._nc.subscribe(f"$KV.{self.bucket}.call.>", cb=self._follow)
        # the front door's sheets: `queued` for each call on one, unless its own entry came first
        self._sheets = await self.js._nc.subscribe(
            f"$KV.{self.bucket}.{SHEET_PREFIX}>", cb=self._follow_sheet
        )
        # the workers' state sheets: the final entries of calls that finished together
        self._states = await self.js._nc.subscribe(
            f"$KV.{self.bucket}.{STATE_PREFIX}>", cb=self._follow_states
        )
        await at_server(self.js._nc)  # the subscriptions at the server before any write
        return self

    async def _follow_sheet(self, msg: Any) -> None:
        for entry in sheet_entries(msg.data):
            seen = self.states.setdefault(entry.call_id, [])
            if not seen:
                seen.append("queued")

    async def _follow(self, msg: Any) -> None:
        if msg.data:
            self._saw(CallEntry.decode(msg.data))

    async def _follow_states(self, msg: Any) -> None:
        for entry in state_entries(msg.data):
            self._saw(entry)

    def _saw(self, entry: CallEntry) -> None:
        written = self.written.setdefault(entry.call_id, [])
        written.append((entry.state.value, entry.callback_outcome))
        seen = self.states.setdefault(entry.call_id, [])
        if not seen or seen[-1] != entry.state.value:
            seen.append(entry.state.value)

    async def close(self) -> None:
        """Stop following and delete the bucket (a test may call it to take the bucket away)."""
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        for sub in (self._sheets, self._states):
            if sub is not None:
                await sub.unsubscribe()
        self._sheets = self._states = None
        with contextlib.suppress(Exception):
            await self.js.delete_key_value(self.bucket)

    async def get(self, call_id: str) -> CallEntry | None:
        assert self.store is not None
        return await self.store.get(call_id)

    async def wait_for_state(self, call_id: str, state: str) -> CallEntry:
        async def reached() -> CallEntry | None:
            entry = await self.get(call_id)
            return entry if entry is not None and entry.state.value == state else None

        found: CallEntry = await eventually(reached, what=f"call {call_id} {state}")
        return found

    def key(self, call_id: str) -> str:
        return entry_key(call_id)


@pytest.fixture(name="ledger")
async def ledger_bucket(queue: QueueUnderTest) -> AsyncIterator[LedgerUnderTest]:
    """`ledger`: a bucket of the test's own, deleted after it (a conftest imports the fixture)."""
    under_test = await LedgerUnderTest(queue.js).setup()
    yield under_test
    await under_test.close()


class BucketWrites:
    """Every message written to a test's ledger bucket, key and value, in order."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, bytes]] = []

    async def seen(self, msg: Any) -> None:
        self.writes.append((msg.subject.split(".", 2)[2], msg.data))

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.writes]

    def state_sheets(self) -> list[list[CallEntry]]:
        """The entries of each state sheet written, in order."""
        return [state_entries(v) for k, v in self.writes if k.startswith(STATE_PREFIX)]


@pytest.fixture(name="writes")
async def bucket_writes(
    queue: QueueUnderTest, ledger: LedgerUnderTest
) -> AsyncIterator[BucketWrites]:
    """`writes`: what is written to the test's bucket (a conftest imports the fixture)."""
    writes = BucketWrites()
    sub = await queue.nc.subscribe(f"$KV.{ledger.bucket}.>", cb=writes.seen)
    await at_server(queue.nc)  # the server has the subscription before the test writes anything
    yield writes
    await sub.unsubscribe()

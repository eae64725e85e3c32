"""Each ledger test gets a bucket of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.ledger import LedgerUnderTest
from tests.support.queue import QueueUnderTest


@pytest.fixture
async def ledger(queue: QueueUnderTest) -> AsyncIterator[LedgerUnderTest]:
    under_test = await LedgerUnderTest(queue.js).setup()
    yield under_test
    await under_test.close()

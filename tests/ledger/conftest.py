"""Each ledger test gets a bucket of its own, and a front door writing to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.service import GatewayService
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.ledger import (  # noqa: F401  (the `ledger` and `writes` fixtures)
    LedgerUnderTest,
    bucket_writes,
    ledger_bucket,
)
from tests.support.queue import QueueUnderTest

FUNCTIONS = ("echo", "held", "big", "never")


@pytest.fixture
async def front_door(
    tmp_path: Path, queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> AsyncIterator[GatewayService]:
    functions = {name: {"url": f"{gateway.url}/function/{name}"} for name in FUNCTIONS}
    path = write_functions(tmp_path / "functions.yml", functions)
    env = gateway_env(queue, functions_file=str(path), **ledger.env())
    async with running_gateway(env) as service:
        yield service

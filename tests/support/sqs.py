"""The SQS connector as child processes in tests, each closed once the test is over."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.contract.test_sqs_contract import sqs_env
from tests.support.http import FakeGateway
from tests.support.moto import MotoServer
from tests.support.procs import FerryProcess


@pytest.fixture(name="procs")
async def connector_procs() -> AsyncIterator[list[FerryProcess]]:
    """`procs`: the processes a test started, closed after it (a conftest imports the fixture)."""
    started: list[FerryProcess] = []
    yield started
    for proc in started:
        await proc.close()


async def start_connector(
    procs: list[FerryProcess], moto: MotoServer, gateway: FakeGateway, url: str, **env: str
) -> FerryProcess:
    """`ferry sqs-connector` on the queue at `url`, started and added to `procs`."""
    proc = FerryProcess("sqs-connector", sqs_env(moto, gateway, url, **env))
    procs.append(await proc.start())
    return proc

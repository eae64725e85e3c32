"""Fixtures for the integration tests: the http1 client's, a ledger bucket, SQS connectors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from connectors.core.http1 import Http1Client
from tests.support.http1 import RawServer, Reply
from tests.support.ledger import ledger_bucket  # noqa: F401  (`ledger`)
from tests.support.sqs import connector_procs  # noqa: F401  (`procs`)


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Reply], RawServer]]:
    servers: list[RawServer] = []

    def make(reply: Reply) -> RawServer:
        server = RawServer(reply)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[Http1Client]:
    http = Http1Client(limit=8)
    yield http
    await http.close()

"""Every request times out at its own deadline, whatever the client's other requests wait for,
and an answered request's deadline never touches its connection afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from connectors.core.http1 import Http1Client
from tests.support.http1 import OK, RawServer


def fast_or_never(request: bytes) -> bytes:
    """Answers /fast at once; never answers anything else (keeps the connection open)."""
    return OK if request.startswith(b"POST /fast ") else b""


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    raw = RawServer(fast_or_never)
    await raw.start()
    yield raw
    await raw.stop()


async def test_a_short_deadline_expires_while_a_longer_one_is_still_waiting(
    server: RawServer,
) -> None:
    client = Http1Client(limit=4)
    patient = asyncio.create_task(client.request("POST", server.url("/slow"), timeout=3600))
    hasty = asyncio.create_task(client.request("POST", server.url("/slow"), timeout=0.2))
    try:
        await asyncio.wait({hasty}, timeout=30)  # a bound for a broken client, not a goal
        assert hasty.done()
        assert isinstance(hasty.exception(), TimeoutError)
        assert not patient.done()  # its own deadline is an hour away
    finally:
        for task in (patient, hasty):
            task.cancel()
        await asyncio.gather(patient, hasty, return_exceptions=True)
        await client.close()


async def test_requests_expire_in_deadline_order_and_answered_ones_never_expire(
    server: RawServer,
) -> None:
    client = Http1Client(limit=4)
    try:
        later = asyncio.create_task(client.request("POST", server.url("/slow"), timeout=0.6))
        sooner = asyncio.create_task(client.request("POST", server.url("/slow"), timeout=0.3))
        answered = await client.request("POST", server.url("/fast"), timeout=0.1)
        assert answered.status == 200
        done, _ = await asyncio.wait({later, sooner}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {sooner}
        with pytest.raises(TimeoutError):
            await sooner
        with pytest.raises(TimeoutError):
            await later
        # the answered request's connection went back to the pool and is still open: its
        # deadline (long past now) did not close it
        assert (await client.request("POST", server.url("/fast"), timeout=5)).status == 200
        assert server.connections == 3
    finally:
        await client.close()

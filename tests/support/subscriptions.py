"""Knowing that the NATS server has a test's subscriptions before another connection publishes.

nats-py 2.16's `flush()` is no such proof: it writes its PING straight to the socket, ahead of
the commands still waiting in the client's own buffer (a SUB just made among them), so its PONG
can come back before the server has seen the SUB. A message a connection sends to itself goes
through that buffer in order, so once it comes back the server has taken all sent before it.
"""

from __future__ import annotations

from nats.aio.client import Client


async def at_server(nc: Client, timeout: float = 10.0) -> None:
    """Return once the server has processed everything `nc` sent before this call."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    await nc.publish(inbox, b"")
    await sub.next_msg(timeout=timeout)

"""The one way ferry connects to NATS, and what the connection tells the process afterwards.

`connect` is bounded by `nats_connect_timeout` and fails with one line (`StartupError`, exit 2)
naming the servers or the credentials NATS refused. After that nats-py reconnects forever to
any server it knows (the seed list plus those the cluster announces), and `NatsConnection`
keeps the process honest about it: `connected` feeds `/readyz`, every (re)connection is logged
with the server, and if nats-py closes the client for good (a protocol error such as an
authorization violation) `while_open` raises `NatsLost`, so the process exits non-zero instead
of staying up and deaf. Servers that keep refusing the credentials on reconnect (revoked
while the process ran) count as lost too: nats-py would retry that forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError

from connectors.core.errors import FerryError, StartupError
from connectors.core.supervision import cancel_and_wait, unless_set
from connectors.jetstream.credentials import auth_options, tls_context
from connectors.jetstream.settings import NatsSettings, redact

log = logging.getLogger("ferry.nats")

Callback = Callable[[], Awaitable[None]]
T = TypeVar("T")

# One unanswered ping is tolerated; the second means the server is hung (SIGSTOP, a dead
# link that keeps its TCP state): nats-py reconnects, and readiness is false meanwhile.
MAX_OUTSTANDING_PINGS = 1
RECONNECT_WAIT_SECONDS = 1.0
REFUSALS_BEFORE_GIVING_UP = 3


class NatsLost(FerryError):
    """nats-py closed the connection for good: this process can neither take nor record work."""


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or exc.__class__.__name__


class NatsConnection:
    """A nats-py client plus the state a ferry process needs to know about it."""

    def __init__(
        self,
        settings: NatsSettings,
        on_disconnect: Callback | None = None,
        on_reconnect: Callback | None = None,
    ) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._on_disconnect = on_disconnect
        self._on_reconnect = on_reconnect
        self._connected = False
        self._closing = False
        self._lost = asyncio.Event()
        self.lost_reason = ""
        self._refusals = 0
        self.first_errors: list[BaseException] = []  # before the first connection only
        self.refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def client(self) -> Client:
        assert self._client is not None, "connect() first"
        return self._client

    @property
    def connected(self) -> bool:
        """Connected to some server right now (false while reconnecting and once lost)."""
        return self._connected and not self._lost.is_set()

    @property
    def server(self) -> str:
        """The server connected to, as it may be logged (no user information)."""
        if self._client is None or self._client.connected_url is None:
            return "?"
        url = redact(self._client.connected_url.geturl())
        info = getattr(self._client, "_server_info", None) or {}
        name = info.get("server_name") if isinstance(info, dict) else None
        return f"{url} ({name})" if name else url

    async def while_open(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work`; if NATS closes the connection for good first, cancel it, raise NatsLost."""
        task = await unless_set(self._lost, work)
        if task.cancelled() and self._lost.is_set():
            raise NatsLost(f"NATS closed the connection for good: {self.lost_reason}")
        return task.result()

    async def close(self, *, drain: bool = False) -> None:
        """Close on purpose (not a loss): flush or drain what was published, then close."""
        self._closing = True
        client = self._client
        if client is None or client.is_closed:
            return
        with contextlib.suppress(NatsError, TimeoutError):
            if drain:
                await client.drain()
            else:
                await client.flush(timeout=2)
        if not client.is_closed:
            # a connection lost meanwhile (a server that revoked the credentials) ends here
            # too: nats-py's close then raises the transport's error (uvloop's is a
            # RuntimeError: "unable to perform operation on <TCPTransport closed=True>"),
            # and there is nothing left to close
            with contextlib.suppress(NatsError, TimeoutError, OSError, RuntimeError):
                await client.close()

    # -- nats-py callbacks ------------------------------------------------------------------

    async def _error(self, exc: Exception) -> None:
        if self._client is None:
            # before the first connection the error goes into the one start-up line instead
            self.first_errors[:] = [exc]
            if _is_refusal(exc) and not self.refused.done():
                self.refused.set_result(None)
        elif _is_refusal(exc):
            # nats-py retries a refused reconnect forever; the credentials will not change
            # under a running process, so after a few refusals in a row it is lost for good
            self._refusals += 1
            if self._refusals == REFUSALS_BEFORE_GIVING_UP:
                self.lost_reason = "the servers refuse the credentials (authorization violation)"
                self._lost.set()
        else:
            log.warning("NATS (%s): %s", self.server, describe(exc))

    async def _disconnected(self) -> None:
        was = self._connected
        self._connected = False
        if was and not self._closing:
            log.warning("disconnected from NATS server %s; reconnecting", self.server)
        if self._on_disconnect is not None:
            await self._on_disconnect()

    async def _reconnected(self) -> None:
        self._connected = True
        self._refusals = 0
        log.info("reconnected to NATS server %s", self.server)
        if self._on_reconnect is not None:
            await self._on_reconnect()

    async def _closed(self) -> None:
        self._connected = False
        if self._closing or self._client is None or self._lost.is_set():
            return
        error = self._client.last_error
        self.lost_reason = describe(error) if error is not None else "no reason given"
        self._lost.set()


async def connect(
    settings: NatsSettings,
    *,
    name: str,
    on_disconnect: Callback | None = None,
    on_reconnect: Callback | None = None,
) -> NatsConnection:
    """Connect to the first reachable server of `settings.servers` within the time allowed.

    Raises ConfigError for an unreadable secret or TLS file and StartupError when no server
    takes the connection in time or the servers refuse the credentials.
    """
    options = auth_options(settings)
    context = tls_context(settings)
    if context is not None:
        options["tls"] = context
    connection = NatsConnection(settings, on_disconnect, on_reconnect)
    servers = settings.servers
    timeout = settings.nats_connect_timeout
    options.update(
        servers=servers,
        name=name,
        # per attempt, so a server that does not answer leaves time to try the others
        connect_timeout=max(1.0, timeout / len(servers)),
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=RECONNECT_WAIT_SECONDS,
        ping_interval=settings.nats_ping_interval,
        max_outstanding_pings=MAX_OUTSTANDING_PINGS,
        error_cb=connection._error,
        disconnected_cb=connection._disconnected,
        reconnected_cb=connection._reconnected,
        closed_cb=connection._closed,
    )
    # nats-py keeps retrying a first connection when reconnects are unbounded: bound it here,
    # and stop at once when a server refuses the credentials (retrying will not help)
    attempt = asyncio.ensure_future(nats.connect(**options))
    waiting: set[asyncio.Future[Any]] = {attempt, connection.refused}
    done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if attempt not in done:
        await cancel_and_wait(attempt)
        connection.refused.cancel()
        raise StartupError(_startup_failure(settings, connection, refused=bool(done)))
    connection.refused.cancel()
    try:
        connection._client = attempt.result()
    except (NatsError, OSError, TimeoutError) as exc:
        connection.first_errors[:] = [exc]
        raise StartupError(_startup_failure(settings, connection, refused=False)) from None
    connection._connected = True
    log.info("connected to NATS server %s", connection.server)
    return connection


def _is_refusal(exc: BaseException) -> bool:
    # nats-py reports a refusal during the handshake as a plain Error with the server's text
    return isinstance(exc, AuthorizationError) or "authorization violation" in str(exc).lower()


def _startup_failure(settings: NatsSettings, connection: NatsConnection, *, refused: bool) -> str:
    if refused:
        used = [name for name, path in settings.auth_files() if path]
        variable = used[0] if used else f"nats_url={settings.shown_servers}"
        return f"{variable}: NATS refused the credentials (authorization violation)"
    errors = connection.first_errors
    reason = describe(errors[-1]) if errors else "no server answered"
    return (
        f"nats_url={settings.shown_servers}: cannot connect to NATS within "
        f"{settings.nats_connect_timeout:g}s: {reason}"
    )

"""`/system/queues/{function}` on the front door: whether a function's queued calls are paused
by hand, and `POST .../pause` and `.../resume` to change it (`asyncq.function_state`; the
same as `ferry functions pause|resume`).

Guarded like the call routes in both modes: by the `/system` middleware in standalone mode and
by its own check in proxy mode (the upstream gateway knows nothing of these routes), since a
pause stops work.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from asyncq.function_state import (
    MAX_NAME,
    BreakerRecord,
    FunctionStates,
    PausedFunction,
    PauseRefused,
)
from asyncq.settings import QueueNatsSettings
from connectors.core.errors import StartupError
from gateway.credentials import Credentials

log = logging.getLogger("ferry.gateway")


async def open_queue_routes(
    js: JetStreamContext, nats: QueueNatsSettings, credentials: Credentials | None
) -> QueueRoutes:
    """The routes with their bucket; without it (logged) they answer 503 and the gateway runs."""
    try:
        states = await FunctionStates.open(
            js, nats.function_state_bucket, nats.nats_stream_replicas
        )
    except (StartupError, NatsError, TimeoutError) as exc:
        log.warning("the /system/queues routes are off: %s", exc)
        states = None
    return QueueRoutes(states, credentials=credentials)


class QueueRoutes:
    def __init__(self, states: FunctionStates | None, *, credentials: Credentials | None) -> None:
        self.states = states  # None: the bucket could not be had (503)
        self.credentials = credentials

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/system/queues/{function}", self.get),
            web.post("/system/queues/{function}/pause", self.pause),
            web.post("/system/queues/{function}/resume", self.resume),
        ]

    async def get(self, request: web.Request) -> web.Response:
        return await self._act(request, "get")

    async def pause(self, request: web.Request) -> web.Response:
        return await self._act(request, "pause")

    async def resume(self, request: web.Request) -> web.Response:
        return await self._act(request, "resume")

    async def _act(self, request: web.Request, action: str) -> web.Response:
        if self.credentials is not None and (refused := self.credentials.refusal(request)):
            return refused
        function = request.match_info["function"]
        if not function or len(function) > MAX_NAME:
            return _error(400, f"a function name is 1 to {MAX_NAME} characters")
        if self.states is None:
            return _error(503, "the paused functions cannot be read (function_state_bucket)")
        try:
            if action == "pause":
                await self.states.pause(function, by="gateway")
            elif action == "resume":
                await self.states.resume(function)
            entry = await self.states.state(function)
            breaker = await self.states.breaker(function)
        except PauseRefused as exc:
            return _error(409, str(exc))
        except (NatsError, TimeoutError) as exc:
            return _error(503, f"NATS did not answer: {type(exc).__name__}")
        return web.json_response(_shown(function, entry, breaker))


def _shown(
    function: str, entry: PausedFunction | None, breaker: BreakerRecord | None
) -> dict[str, Any]:
    shown: dict[str, Any] = {"function": function, "paused": entry is not None}
    if entry is not None:
        shown.update(paused_at=entry.paused_at, paused_by=entry.by)
    shown["breaker"] = (
        {"state": breaker.state, "since": breaker.since, "reason": breaker.reason}
        if breaker is not None
        else {"state": "closed"}
    )
    return shown


def _error(status: int, message: str) -> web.Response:
    body: dict[str, Any] = {"error": message, "status": status}
    return web.json_response(body, status=status)

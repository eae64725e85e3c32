"""`/system/calls/{call_id}` on the front door: what became of an async call, its answer, cancel.

Behind basic auth whenever the gateway's management API is (`basic_auth=true`, the
credentials in `secret_mount_path`), since anyone who can read a result can read what a
function answered, and anyone who can cancel can stop work.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from asyncq.function_state import WAITING_STATES, FunctionStates, why_waiting
from connectors.core.errors import FerryError
from connectors.core.invoker import HOP_BY_HOP
from gateway.credentials import Credentials
from ledger.bucket import LedgerUnavailable
from ledger.delayed import Unschedule, cancel_call
from ledger.entries import CallEntry
from ledger.store import UNCONFIRMED, CancelAnswer, LedgerStore

# The stored answer's own headers that the result route does not repeat: hop-by-hop ones
# (they were the function's connection's), and those the route writes itself.
_NOT_SERVED = HOP_BY_HOP | {
    "content-length",
    "content-type",
    "date",
    "server",
    "x-call-id",
    "x-function-status",
    "x-duration-seconds",
}


class CallRoutes:
    def __init__(
        self,
        store: LedgerStore | None,
        *,
        credentials: Credentials | None,
        unschedule: Unschedule | None = None,
    ) -> None:
        self.store = store
        self.credentials = credentials
        self.unschedule = unschedule  # a cancelled delayed call leaves the stream too
        self.states: FunctionStates | None = None  # pauses and breakers, to say why a call waits

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/system/calls/{call_id}", self.get),
            web.get("/system/calls/{call_id}/result", self.result),
            web.delete("/system/calls/{call_id}", self.cancel),
            web.delete("/async-function/{call_id}", self.cancel),  # as OpenFaaS Pro names it
        ]

    async def get(self, request: web.Request) -> web.Response:
        found = await self._lookup(request)
        if isinstance(found, web.Response):
            return found
        shown = found.public()
        if found.state.value in WAITING_STATES and self.states is not None:
            waiting = await why_waiting(self.states, found.function)
            if waiting:
                shown["waiting"] = waiting
        return web.json_response(shown)

    async def result(self, request: web.Request) -> web.Response:
        found = await self._lookup(request)
        if isinstance(found, web.Response):
            return found
        if not found.state.final:
            return _error(409, f"call {found.call_id} has not finished (it is {found.state})")
        stored = found.result
        if stored is None:
            why = "was cancelled" if found.state.value == "cancelled" else "was not stored"
            return _error(410, f"the answer of call {found.call_id} {why}")
        headers = [(k, v) for k, v in stored.headers if k.lower() not in _NOT_SERVED]
        headers += [
            ("X-Call-Id", found.call_id),
            ("X-Function-Status", str(stored.status)),
            ("X-Duration-Seconds", f"{stored.duration_seconds:.6f}"),
        ]
        response = web.Response(body=stored.body, headers=headers)
        if stored.content_type:
            response.headers["Content-Type"] = stored.content_type
        return response

    async def cancel(self, request: web.Request) -> web.Response:
        call_id = self._call_id(request)
        if isinstance(call_id, web.Response):
            return call_id
        assert self.store is not None
        try:
            answer, entry = await cancel_call(self.store, call_id, self.unschedule)
        except (LedgerUnavailable, FerryError) as exc:
            return _error(503, str(exc))
        if answer is CancelAnswer.TOO_LATE:
            return _error(409, f"call {call_id} cannot be cancelled: it is {entry.state}")
        if answer is CancelAnswer.UNCONFIRMED:
            return _error(503, f"call {call_id}: {UNCONFIRMED}")
        shown = entry.public()
        if answer is CancelAnswer.PENDING:  # the ledger had not seen it: it will not run
            shown["pending"] = True
        return web.json_response(shown, status=202)

    async def _lookup(self, request: web.Request) -> CallEntry | web.Response:
        call_id = self._call_id(request)
        if isinstance(call_id, web.Response):
            return call_id
        assert self.store is not None
        try:
            entry = await self.store.get(call_id)
        except LedgerUnavailable as exc:
            return _error(503, str(exc))
        if entry is None:
            return _error(404, f"no call {call_id} in the ledger (unknown or expired)")
        return entry

    def _call_id(self, request: web.Request) -> str | web.Response:
        """The call id the route names, or the refusal (credentials, ledger off)."""
        refused = self._refusal(request)
        return refused if refused is not None else request.match_info["call_id"]

    def _refusal(self, request: web.Request) -> web.Response | None:
        if self.credentials is not None:
            refused = self.credentials.refusal(request)  # DELETE /async-function/ is not /system
            if refused is not None:
                return refused
        if self.store is None:
            return _error(501, "the call ledger is off (call_ledger=false)")
        return None


def _error(status: int, message: str) -> web.Response:
    body: dict[str, Any] = {"error": message, "status": status}
    return web.json_response(body, status=status)

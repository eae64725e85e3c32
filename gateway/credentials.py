"""The gateway's own basic auth: who may use `/system/*` and the call routes.

With `basic_auth=true` the OpenFaaS gateway asks for its admin credentials on every `/system`
route (function list and details, namespaces, info, secrets, logs), and ferry does the same:
function annotations and labels can name internals, and the call routes read what functions
answered and cancel work. `/function/*`, `/async-function/*` and `/healthz` stay open, as on
OpenFaaS. The lean listener serves no `/system` route (it hands them to aiohttp), so this
aiohttp middleware covers every way in. In proxy mode the upstream guards its own routes (the
caller's `Authorization` reaches it unchanged, so its bearer tokens keep working) and ferry
checks only its call routes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

REALM = 'Basic realm="ferry"'


class Credentials:
    """The expected `Authorization: Basic ...` value, checked in constant time."""

    def __init__(self, authorization: str) -> None:
        # b"user:password", as read from the files
        self._expected = base64.b64decode(authorization.partition(" ")[2])

    def allow(self, given: str) -> bool:
        # a header's bytes that are not UTF-8 come as surrogate escapes: take them as bytes
        scheme, _, token = given.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        raw = token.strip().encode("utf-8", "surrogateescape")
        try:
            decoded = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(decoded, self._expected)

    def refusal(self, request: web.Request) -> web.Response | None:
        """401 unless the request carries the credentials."""
        if self.allow(request.headers.get("Authorization", "")):
            return None
        body: dict[str, Any] = {"error": "unauthorized", "status": 401}
        return web.json_response(body, status=401, headers={"WWW-Authenticate": REALM})


def is_system_path(path: str) -> bool:
    """Whether a (decoded) path is under `/system`, however many slashes lead to it."""
    first = path.lstrip("/").partition("/")[0]
    return first == "system"


def system_routes_need(credentials: Credentials | None) -> Middleware:
    """The middleware that asks for `credentials` on every `/system` path (none: all open)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if credentials is not None and is_system_path(request.path):
            refused = credentials.refusal(request)
            if refused is not None:
                return refused
        return await handler(request)

    return check

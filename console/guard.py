"""Who may use the console and how its forms are protected: basic auth with the gateway's
credentials, a double-submit CSRF token on every POST, and headers that keep pages from being
framed, sniffed or cached."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

CSRF_COOKIE = "ferry_console_csrf"
CSRF_FIELD = "csrf"
USER = "console_user"
TOKEN = "console_csrf"
ANONYMOUS = "anonymous"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def user_of(header: str, authorization: str | None) -> str | None:
    """The basic-auth user if `header` carries exactly the expected credentials (compared in
    constant time), ANONYMOUS when no credentials are configured, else None."""
    if authorization is None:
        return ANONYMOUS
    given = header.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, authorization.encode()):
        return None
    try:
        decoded = base64.b64decode(header.partition(" ")[2], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or ANONYMOUS


def guard(authorization: str | None, secure_cookie: bool = False) -> Middleware:
    """A middleware for the console's sub-application."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        user = user_of(request.headers.get("Authorization", ""), authorization)
        if user is None:
            refused = web.Response(status=401, text="401: credentials required\n")
            refused.headers["WWW-Authenticate"] = 'Basic realm="ferry console"'
            return _secured(refused)
        request[USER] = user
        cookie = request.cookies.get(CSRF_COOKIE, "")
        token = cookie if _well_formed(cookie) else secrets.token_urlsafe(32)
        request[TOKEN] = token
        if request.method not in ("GET", "HEAD"):
            refusal = await _csrf_refusal(request, cookie)
            if refusal is not None:
                return _secured(refusal)
        response = await handler(request)
        if token != cookie:
            response.set_cookie(
                CSRF_COOKIE,
                token,
                path=request.app["console_prefix"],
                httponly=True,
                samesite="Strict",
                secure=secure_cookie,
            )
        return _secured(response)

    return check


async def _csrf_refusal(request: web.Request, cookie: str) -> web.Response | None:
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return web.Response(status=403, text="403: cross-site request refused\n")
    form = await request.post()
    sent = form.get(CSRF_FIELD)
    if not (isinstance(sent, str) and _well_formed(cookie)):
        return web.Response(status=403, text="403: missing CSRF token; reload the page\n")
    if not hmac.compare_digest(sent.encode(), cookie.encode()):
        return web.Response(status=403, text="403: wrong CSRF token; reload the page\n")
    return None


def _well_formed(token: str) -> bool:
    return (
        20 <= len(token) <= 64
        and token.isascii()
        and token.replace("-", "_").replace("_", "a").isalnum()
    )


def _secured(response: web.StreamResponse) -> web.StreamResponse:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response

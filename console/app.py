"""The console as an aiohttp sub-application, mounted at `/system/console/` by `ferry gateway`
(the shell wires it in) or by `ferry console`."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from console import pages
from console.data import ConsoleData
from console.guard import guard

PREFIX = "/system/console/"


def console_app(
    data: ConsoleData, *, authorization: str | None, prefix: str = PREFIX
) -> web.Application:
    """`authorization` is the expected `Authorization` header (None: no credentials asked,
    which the caller allows only when the operator said so with `console_enabled=true`)."""
    app = web.Application(middlewares=[guard(authorization)], client_max_size=64 * 1024)
    app["console_prefix"] = prefix
    app[pages.DATA] = data
    app[pages.TEMPLATES] = pages.templates()
    static = resources.files("console") / "static"
    app.add_routes(
        [
            web.get("/", pages.overview),
            web.get("/functions", pages.functions),
            web.post("/functions/pause", pages.pause),
            web.post("/functions/resume", pages.resume),
            web.get("/calls", pages.calls),
            web.get("/call", pages.call),
            web.get("/call/result", pages.result),
            web.post("/call/cancel", pages.cancel),
            web.get("/dead-letters", pages.letters),
            web.get("/dead-letter", pages.letter),
            web.post("/dead-letters/replay", pages.replay),
            web.post("/dead-letters/purge", pages.purge),
            web.get("/schedules", pages.schedules),
            web.static("/static", str(static), append_version=False),
        ]
    )
    return app


def mount(parent: web.Application, console: web.Application, prefix: str = PREFIX) -> None:
    parent.add_subapp(prefix.rstrip("/"), console)

"""The console's pages and actions: each handler reads what it shows through `ConsoleData` and
renders one template; every change is a POST that redirects back (and is logged with who)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from asyncq import codec
from asyncq.dead_letter_store import DeadLetter, DeadLetterError
from asyncq.function_state import PauseRefused
from connectors.core.errors import DecodeError
from connectors.core.numbers import ascii_int
from console.activity import SERIES, chart_bars
from console.data import ConsoleData, ConsoleUnavailable
from console.functions_view import function_rows
from console.guard import TOKEN, USER
from console.redact import public_headers, public_url
from console.schedules import schedule_rows
from ledger.entries import CallState
from ledger.store import CancelAnswer

log = logging.getLogger("ferry.console")

PREVIEW_BYTES = 4096
LIST_LIMITS = (50, 200, 1000)
SHOWN_ID_CHARS = 128
DATA = web.AppKey("console_data", ConsoleData)
TEMPLATES = web.AppKey("console_templates", jinja2.Environment)


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("console", "templates"),
        autoescape=True,  # every value comes from callers, functions or the ledger
        undefined=jinja2.StrictUndefined,
    )
    env.filters["q"] = lambda text: quote(str(text), safe="")
    env.filters["when"] = _when
    env.filters["short"] = lambda text: _short(str(text))
    return env


def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    app = request.app
    values.setdefault("refresh", request.method == "GET" and status in (200, 503))
    page = (
        app[TEMPLATES]
        .get_template(template)
        .render(
            prefix=app["console_prefix"],
            csrf=request[TOKEN],
            user=request[USER],
            path=request.path,
            query=request.query_string,
            notice=request.query.get("notice", "")[:200],
            **values,
        )
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def unavailable(request: web.Request, exc: ConsoleUnavailable | DeadLetterError) -> web.Response:
    return render(request, "unavailable.html", status=503, reason=str(exc))


def back(request: web.Request, where: str, notice: str, **query: str) -> web.HTTPSeeOther:
    target = request.app["console_prefix"] + where
    params = urlencode({**query, "notice": notice})
    return web.HTTPSeeOther(f"{target}?{params}")


# -- reading ------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    data = request.app[DATA]
    try:
        seen = await data.overview()
    except ConsoleUnavailable as exc:
        return unavailable(request, exc)
    activity = seen.activity
    return render(
        request,
        "overview.html",
        seen=seen,
        totals={name: activity.total(name) for name in SERIES},
        bars=chart_bars(activity),
        series=SERIES,
    )


async def functions(request: web.Request) -> web.Response:
    data = request.app[DATA]
    try:
        known = await data.functions()
        seen = await data.overview()
        letters = await data.recent_letters()
    except (ConsoleUnavailable, DeadLetterError) as exc:
        return unavailable(request, exc)
    rows = function_rows(
        (f.qualified for f in known),
        seen.activity.per_function,
        seen.backlog,
        (letter.function for letter in letters),
        await data.paused(),
    )
    return render(request, "functions.html", rows=rows, consumers=seen.consumers)


async def calls(request: web.Request) -> web.StreamResponse:
    data = request.app[DATA]
    wanted = request.query.get("id", "").strip()
    if wanted:
        raise web.HTTPSeeOther(f"{request.app['console_prefix']}call?id={quote(wanted, safe='')}")
    function = request.query.get("function", "")[:256]
    state = request.query.get("state", "")
    if state and state not in {s.value for s in CallState}:
        state = ""
    limit = _limit(request.query.get("limit", ""))
    try:
        entries = await data.calls(function=function, state=state, limit=limit)
    except ConsoleUnavailable as exc:
        return unavailable(request, exc)
    return render(
        request,
        "calls.html",
        entries=entries,
        function=function,
        state=state,
        states=[s.value for s in CallState],
        limit=limit,
        limits=LIST_LIMITS,
    )


async def call(request: web.Request) -> web.Response:
    call_id = request.query.get("id", "")
    try:
        entry = await request.app[DATA].call(call_id)
    except ConsoleUnavailable as exc:
        return unavailable(request, exc)
    if entry is None:
        return render(request, "missing.html", status=404, what="call", name=call_id)
    waiting = await request.app[DATA].waiting(entry)
    preview = None
    if entry.result is not None:
        preview = entry.result.body[:PREVIEW_BYTES].decode("utf-8", "replace")
    return render(
        request,
        "call.html",
        entry=entry,
        preview=preview,
        truncated=entry.result is not None and len(entry.result.body) > PREVIEW_BYTES,
        callback=public_url(entry.callback_url or ""),
        waiting=waiting,
    )


async def result(request: web.Request) -> web.StreamResponse:
    """The stored answer as a download: never rendered, whatever its content type says."""
    call_id = request.query.get("id", "")
    try:
        entry = await request.app[DATA].call(call_id)
    except ConsoleUnavailable as exc:
        return unavailable(request, exc)
    if entry is None or entry.result is None:
        return render(request, "missing.html", status=404, what="stored result", name=call_id)
    return web.Response(
        body=entry.result.body,
        content_type="application/octet-stream",
        headers={"Content-Disposition": 'attachment; filename="result.bin"'},
    )


async def letters(request: web.Request) -> web.Response:
    function = request.query.get("function", "")[:256]
    reason = request.query.get("reason", "")[:256]
    try:
        found = await request.app[DATA].recent_letters()
    except (ConsoleUnavailable, DeadLetterError) as exc:
        return unavailable(request, exc)
    shown = [
        letter
        for letter in found
        if (not function or letter.belongs_to(function))
        and (not reason or letter.reason.startswith(reason))
    ]
    return render(request, "letters.html", letters=shown, function=function, reason=reason)


async def letter(request: web.Request) -> web.Response:
    seq = _seq(request.query.get("seq", ""))
    try:
        found = await request.app[DATA].letter(seq) if seq else None
    except ConsoleUnavailable as exc:
        return unavailable(request, exc)
    if found is None:
        return render(request, "missing.html", status=404, what="dead letter", name=str(seq))
    return render(request, "letter.html", letter=found, message=_message(found))


async def schedules(request: web.Request) -> web.Response:
    data = request.app[DATA]
    try:
        rows = await schedule_rows(await data.functions(), data.claimed_by)
    except ConsoleUnavailable as exc:
        return unavailable(request, exc)
    return render(request, "schedules.html", rows=rows)


# -- acting -------------------------------------------------------------------------------


async def cancel(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    call_id = str(form.get("id", ""))
    try:
        answer = await request.app[DATA].cancel(call_id)
    except ConsoleUnavailable as exc:
        return unavailable(request, exc)
    log.info("console: %s cancelled call %s: %s", request[USER], _short(call_id), answer.value)
    notice = {
        CancelAnswer.CANCELLED: "cancelled: the call will not run",
        CancelAnswer.PENDING: "cancelled before the ledger saw it: the call will not run",
        CancelAnswer.TOO_LATE: "too late: the call is running or has ended",
        CancelAnswer.UNCONFIRMED: "recorded, but not every worker has it yet: it may still run",
    }.get(answer, answer.value)
    raise back(request, "call", notice, id=call_id)


async def pause(request: web.Request) -> web.StreamResponse:
    return await _pausing(request, paused=True)


async def resume(request: web.Request) -> web.StreamResponse:
    return await _pausing(request, paused=False)


async def _pausing(request: web.Request, *, paused: bool) -> web.StreamResponse:
    """No worker takes a paused function's calls until it is resumed (running ones finish)."""
    form = await request.post()
    function = str(form.get("function", ""))
    try:
        changed = await request.app[DATA].set_paused(function, paused, request[USER])
    except ConsoleUnavailable as exc:
        return unavailable(request, exc)
    except PauseRefused as exc:
        raise back(request, "functions", f"not paused: {exc}") from None
    done = "paused" if paused else ("resumed" if changed else "was not paused")
    log.info("console: %s %s function %s", request[USER], done, _short(function))
    raise back(request, "functions", f"{_short(function)}: {done}")


async def replay(request: web.Request) -> web.StreamResponse:
    return await _letter_action(request, "replay")


async def purge(request: web.Request) -> web.StreamResponse:
    return await _letter_action(request, "purge")


async def _letter_action(request: web.Request, action: str) -> web.StreamResponse:
    """Replay or purge one dead letter (`seq`) or all of one function's (`function`): the
    first POST shows what would change; only a POST with `confirm=yes` changes it."""
    form = await request.post()
    data = request.app[DATA]
    seq = _seq(str(form.get("seq", "")))
    function = str(form.get("function", ""))[:256]
    try:
        if seq:
            one = await data.letter(seq)
            chosen = [one] if one is not None else []
        elif function:
            chosen = [d for d in await data.recent_letters() if d.belongs_to(function)]
        else:
            chosen = []
        if form.get("confirm") != "yes":
            return render(
                request, "confirm.html", action=action, letters=chosen, seq=seq, function=function
            )
        done = await (data.replay(chosen) if action == "replay" else data.purge(chosen))
    except (ConsoleUnavailable, DeadLetterError) as exc:
        return unavailable(request, exc)
    what = f"dead letter {seq}" if seq else f"{len(chosen)} dead letters of {_short(function)}"
    past = "replayed" if action == "replay" else "purged"
    log.info("console: %s %s %s (%d done)", request[USER], past, what, done)
    raise back(request, "dead-letters", f"{action}: {done} of {len(chosen)} done")


# -- helpers ------------------------------------------------------------------------------


def _message(letter: DeadLetter) -> Mapping[str, Any] | None:
    """The dead-lettered call as the details page shows it, secrets hidden."""
    try:
        request = codec.decode(letter.data)
    except DecodeError:
        return None
    return {
        "function": request.function,
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "queue": request.queue_name,
        "callback": public_url(request.callback_url),
        "headers": public_headers(request.header),
        "body": request.body[:PREVIEW_BYTES].decode("utf-8", "replace"),
        "body_bytes": len(request.body),
    }


def _limit(text: str) -> int:
    limit = ascii_int(text, 6)
    return limit if limit in LIST_LIMITS else LIST_LIMITS[0]


def _seq(text: str) -> int:
    return ascii_int(text, 19) or 0


def _short(text: str) -> str:
    return text if len(text) <= SHOWN_ID_CHARS else text[:SHOWN_ID_CHARS] + "…"


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if not value:
        return "\u2013"
    return str(value).replace("T", " ")[:23]

"""One async call as plain values: what the front door needs from a request, however read."""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncq.timing import CallTiming


@dataclass(slots=True, kw_only=True)
class AsyncCall:
    """`POST /async-function/{name}[/{tail}]`, read by aiohttp's router or the lean listener."""

    name: str
    tail: str  # what follows `/{name}/` in the path ("" for none)
    query_string: str
    headers: list[tuple[str, str]]  # as received, in order
    host: str
    callback_url: str  # the first X-Callback-Url, stripped
    method: str = "POST"
    # the delay and expiry headers (lower-case names), picked out by whoever read the request,
    # and the timing they ask for, once the call is admitted
    asked: dict[str, str] = field(default_factory=dict)
    timing: CallTiming | None = None

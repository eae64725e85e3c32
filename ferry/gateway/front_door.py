"""`POST /async-function/{name}[/{path}]`: validate, store on JetStream, answer 202.

The answer is 202 only after JetStream acknowledged storing the message; any doubt (NATS
disconnected, no PubAck within `publish_timeout`) is a 503, so a caller never holds a call id
for a call that was not queued.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web
from multidict import CIMultiDictProxy

from connectors.core.errors import CallbackRefused
from connectors.core.invoker import NOT_FORWARDED
from connectors.core.urlguard import CallbackPolicy
from ferry.gateway.functions import FunctionCatalog
from ferry.gateway.metrics import GatewayMetrics
from queue_worker.jetstream import PublishError
from queue_worker.publisher import Publisher, build_request

log = logging.getLogger("ferry.gateway")

# Not stored in the queued request: one hop's headers, those the worker's client rebuilds,
# and X-Start-Time, which the front door sets itself.
NOT_QUEUED = NOT_FORWARDED | {"x-start-time"}


class TooLarge(Exception):
    """The request body is above `max_body_bytes`."""


class FrontDoor:
    def __init__(
        self,
        catalog: FunctionCatalog,
        publisher: Publisher,
        policy: CallbackPolicy,
        metrics: GatewayMetrics,
        *,
        max_body_bytes: int,
        publish_timeout: float,
        connected: Callable[[], bool],
    ) -> None:
        self.catalog = catalog
        self.publisher = publisher
        self.policy = policy
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.publish_timeout = publish_timeout
        self.connected = connected
        self._accepted = metrics.async_calls.labels("accepted")
        self._duplicate = metrics.async_calls.labels("duplicate")

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/async-function/{name}", self.handle),
            web.post("/async-function/{name}/", self.handle),
            web.post("/async-function/{name}/{tail:.+}", self.handle),
        ]

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        function = self.catalog.current.find(name) or await self.catalog.lookup(name)
        if function is None:
            return self._reject("not_found", 404, f"function {name} not found")
        callback = request.headers.get("X-Callback-Url", "").strip()
        if callback:
            try:
                self.policy.check_url(callback)
            except CallbackRefused as exc:
                return self._reject("bad_callback", 400, f"X-Callback-Url refused: {exc}")
        try:
            body = await self._read_body(request)
        except TooLarge:
            return self._reject(
                "too_large", 413, f"request body is larger than {self.max_body_bytes} bytes"
            )
        tail = request.match_info.get("tail")
        queued = build_request(
            name,
            body=body,
            method=request.method,
            path=f"/{tail}" if tail else "",
            query_string=request.raw_path.partition("?")[2],
            headers=_queued_headers(request.headers),
            host=request.host,
            annotations=function.annotations,
            callback_url=callback,
        )
        if not self.connected():
            return self._unavailable("not connected to NATS")
        started = time.perf_counter()
        try:
            ack = await self.publisher.enqueue(queued, timeout=self.publish_timeout)
        except PublishError as exc:
            return self._unavailable(str(exc))
        self.metrics.publish_duration.observe(time.perf_counter() - started)
        (self._duplicate if ack.duplicate else self._accepted).inc()
        return web.Response(
            status=202,
            headers={"X-Call-Id": queued.call_id, "X-Start-Time": queued.start_time},
        )

    async def _read_body(self, request: web.Request) -> bytes:
        """The whole body; the app's `client_max_size` is `max_body_bytes`, so aiohttp stops
        reading (and we answer 413) as soon as a body, declared or chunked, goes over it."""
        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            raise TooLarge
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise TooLarge from None

    def _reject(self, outcome: str, status: int, text: str) -> web.Response:
        self.metrics.async_calls.labels(outcome).inc()
        return web.Response(status=status, text=text + "\n")

    def _unavailable(self, reason: str) -> web.Response:
        log.warning("refusing an async call, it could not be queued: %s", reason)
        return self._reject(
            "unavailable", 503, f"the call was not queued: NATS JetStream is unavailable ({reason})"
        )


def _queued_headers(headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.items() if k.lower() not in NOT_QUEUED]

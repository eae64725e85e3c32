"""Matches an event's topic to functions and invokes them (the connector SDK's heart).

Sources hand the `Controller` an `Event`; it finds the subscribed functions in the current
`TopicMap`, invokes them concurrently (at most `max_inflight` calls at once across the
process, and of each function what its limit allows: `function_limits.py`), and returns one
`Delivery` per function with its final outcome (both in `delivery.py`). Sources decide what a
final failure means on their broker (dead-letter topic, DLQ, log) and acknowledge only after
every delivery is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import NamedTuple, Protocol

from prometheus_client import CollectorRegistry

from connectors.core import tracing
from connectors.core.breaker import BreakerSettings
from connectors.core.config import GatewaySettings, RetrySettings
from connectors.core.connector_config import ConnectorSettings
from connectors.core.connector_metrics import ConnectorMetrics
from connectors.core.delivery import (
    Abandoned,
    Delivery,
    Event,
    NotStarted,
    ResponseSubscriber,
    unexpected_error,
)
from connectors.core.function_limit_metrics import FunctionLimitCollector
from connectors.core.function_limits import (
    MAX_FREE_RETURNS,
    FunctionLimits,
    annotated_cap,
    overload_pause,
)
from connectors.core.gateway import GatewayClient
from connectors.core.http1 import InvalidRequest, header_lines
from connectors.core.invoker import InvocationResult, Invoker, function_route, print_request_body
from connectors.core.retry import RetryPolicy, Verdict
from connectors.core.slots import CallSlots
from connectors.core.targets import addressable_call_id
from connectors.core.topicmap import FunctionInfo, TopicMap, TopicMapRefresher
from connectors.core.version import USER_AGENT

log = logging.getLogger("ferry.connector")

FUNCTIONS_REMEMBERED = 10_000  # functions whose call details are kept; past it, start over


class _Prepared(NamedTuple):
    """What every call of one function shares."""

    function: FunctionInfo  # the object this was made for
    policy: RetryPolicy  # the process's, with the function's retry annotations laid over it
    url: str
    headers: tuple[tuple[str, str], ...]  # after X-Topic and the event's own
    lines: str | None  # `headers` as request head lines (None: they cannot be sent)
    cap: int | None  # ferry.max_inflight
    breaker: BreakerSettings | None  # the process's, with ferry.breaker.* laid over it


class ConnectorConfig(Protocol):
    """The setting groups every connector's config object nests."""

    @property
    def connector(self) -> ConnectorSettings: ...

    @property
    def gateway(self) -> GatewaySettings: ...

    @property
    def retry(self) -> RetrySettings: ...


class Controller:
    def __init__(
        self,
        *,
        connector: str,
        settings: ConnectorSettings,
        invoker: Invoker,
        policy: RetryPolicy,
        topics: TopicMapRefresher,
        metrics: ConnectorMetrics,
        print_response_body: bool = False,
    ) -> None:
        self.connector = connector
        self.settings = settings
        self.invoker = invoker
        self.policy = policy
        self.topics = topics
        self.metrics = metrics
        self.print_response_body = print_response_body
        self.subscribers: list[ResponseSubscriber] = []
        self._slots = CallSlots(settings.max_inflight)
        self.limits = FunctionLimits(
            settings.max_inflight, settings.limiter_enabled, settings.breaker_settings()
        )
        self.running = 0  # invocations under way; the inflight gauge reads it when scraped
        metrics.inflight.set_function(lambda: self.running)
        self._known: dict[str, _Prepared] = {}  # by qualified name; see _prepared
        self._print_request_body = invoker.client.settings.print_request_body
        self._stopping = asyncio.Event()
        # entered while a call waits for its function's limit or a retry back-off: a source
        # that bounds the messages it runs at once lets another take the place meanwhile
        # (`connectors.core.aside`: Kafka's lane scheduler, SQS's receive slots); by default
        # nothing (cron)
        self.step_aside: Callable[[], AbstractAsyncContextManager[None]] = contextlib.nullcontext

    def stop(self) -> None:
        """Start no more calls: `deliver` raises `Abandoned` instead of waiting out a back-off
        (a drain never waits out a retry delay), and an attempt still waiting for a free slot
        raises `NotStarted` instead of calling. Calls already running finish normally."""
        self._stopping.set()
        self.limits.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @classmethod
    def build(
        cls,
        connector: str,
        config: ConnectorConfig,
        registry: CollectorRegistry,
        on_rebuild: Callable[[TopicMap], None] | None = None,
    ) -> Controller:
        """The SDK wired as every connector needs it: one pooled gateway client, a topic map
        whose size and failed rebuilds land in the connector metrics, the retry policy."""
        settings, gateway = config.connector, config.gateway
        metrics = ConnectorMetrics(registry, settings.max_inflight)
        client = GatewayClient(gateway, max_inflight=settings.max_inflight)

        def rebuilt(topic_map: TopicMap) -> None:
            metrics.topic_map_size.set(topic_map.size)
            metrics.topic_map_skipped.set(len(topic_map.skipped))
            if on_rebuild is not None:
                on_rebuild(topic_map)

        topics = TopicMapRefresher(
            client,
            interval=settings.rebuild_interval,
            delimiter=settings.topic_delimiter,
            namespace=settings.namespace,
            on_rebuild=rebuilt,
            on_failure=lambda _: metrics.topic_map_failures.inc(),
        )
        controller = cls(
            connector=connector,
            settings=settings,
            invoker=Invoker(client),
            policy=RetryPolicy.from_settings(config.retry),
            topics=topics,
            metrics=metrics,
            print_response_body=gateway.print_response_body,
        )
        FunctionLimitCollector(registry, controller.limits)
        return controller

    @property
    def gateway(self) -> GatewayClient:
        return self.invoker.client

    def subscribe(self, subscriber: ResponseSubscriber) -> None:
        self.subscribers.append(subscriber)

    def match(self, topic: str) -> tuple[FunctionInfo, ...]:
        return self.topics.current.match(topic)

    def policy_for(self, function: FunctionInfo) -> RetryPolicy:
        """The process's policy with the function's retry annotations laid over it."""
        return self._prepared(function).policy

    def _prepared(self, function: FunctionInfo) -> _Prepared:
        """What every call of `function` shares, made once per function (per topic map: a
        rebuilt map's functions are new objects, so a changed annotation is seen at once)."""
        known = self._known.get(function.qualified)
        if known is not None and known.function is function:
            return known
        settings = self.settings
        headers = [("X-Connector", self.connector), ("Content-Type", settings.content_type)]
        if settings.asynchronous_invocation and settings.callback_url:
            headers.append(("X-Callback-Url", settings.callback_url))
        headers.append(("User-Agent", USER_AGENT))
        cap, breaker = annotated_cap(function.annotations), self.limits.breaker_for(function)
        try:
            lines: str | None = header_lines(headers)  # checked and written once
        except InvalidRequest:
            # settings read from the environment refuse such values at start-up; made in
            # code, they are sent as they are with each call, which then fails as it should
            lines = None
        known = _Prepared(
            function,
            self.policy.for_function(function.annotations),
            self.gateway.url(function_route(function.qualified, settings.asynchronous_invocation)),
            tuple(headers),
            lines,
            cap,
            breaker,
        )
        self.limits.recap(function.qualified, cap, breaker)
        if len(self._known) >= FUNCTIONS_REMEMBERED:
            self._known.clear()
        self._known[function.qualified] = known
        return known

    async def attempt(
        self, event: Event, function: FunctionInfo, attempt: int, returns: int = 0
    ) -> Delivery:
        """One invocation, bounded by max_inflight and the function's limit; the outcome says
        whether to retry. A call the limiter sent back (429 while probing) is sent again
        within the same attempt, after `returns` such returns already (`Delivery.returns`).

        An error nothing foresaw (a bug, or input no check caught) is a failed attempt like
        any other, never an exception: retried up to the limit, then final with its reason,
        so the source dead-letters the message and moves on instead of stalling on it.
        `NotStarted` (raised, not a failed attempt) if the controller was stopped before a slot
        came free. (One coroutine for all of it: this runs for every message.)"""
        try:
            prepared = self._prepared(function)
            name = function.qualified
            headers = [("X-Topic", event.topic), *event.headers]
            if prepared.lines is None:
                headers += prepared.headers
            if event.call_id:
                headers.append(("X-Call-Id", addressable_call_id(event.call_id)))
            if self._print_request_body:
                print_request_body(name, event.body)
            while True:
                result, held = await self._call(event, prepared, headers, attempt)
                if held and returns < MAX_FREE_RETURNS:
                    returns += 1  # its breaker opened: in line again until it lets a call by
                    continue
                status = result.status
                if (status != 429 and status != 503) or not overload_pause(result)[0]:
                    break
                self.metrics.throttled.inc(name)
                if not self.limits.adaptive or returns >= MAX_FREE_RETURNS:
                    break
                returns += 1  # the limiter's overshoot: in line again, no attempt used
            self.metrics.duration.observe(result.duration, name)
            outcome = result.outcome(prepared.policy)
            if outcome.verdict is Verdict.RETRY:
                self.metrics.retries.inc(name)
                log.warning(
                    "%s on %s: %s (attempt %d), retry in %.2fs",
                    *(name, event.topic, outcome.reason, attempt, outcome.delay),
                )
            return Delivery(event, function, result, outcome, returns)
        except Abandoned:
            raise  # the source is stopping: no outcome, the broker delivers the event again
        except Exception as exc:
            return self._unexpected(event, function, attempt, exc)

    def _unexpected(
        self, event: Event, function: FunctionInfo, attempt: int, exc: Exception
    ) -> Delivery:
        name = function.qualified
        error = unexpected_error(exc)
        log.error("%r on %s: %s (attempt %d)", name, event.topic, error, attempt, exc_info=exc)
        result = InvocationResult(function=name, status=None, attempt=attempt, duration=0.0)
        known = self._known.get(name)  # the function's own policy, if it got that far
        policy = known.policy if known is not None and known.function is function else self.policy
        outcome = policy.decide(status=None, attempt=attempt, error=error)
        if outcome.verdict is Verdict.RETRY:
            self.metrics.retries.inc(name)
        return Delivery(event, function, result, outcome)

    async def _call(
        self, event: Event, prepared: _Prepared, headers: list[tuple[str, str]], attempt: int
    ) -> tuple[InvocationResult, bool]:
        """One call once the function's limit, breaker and a `max_inflight` slot allow it; and
        whether its breaker holds it (an availability failure while open: not an attempt).
        With room under both (the usual case), nothing here waits or allocates."""
        name = prepared.function.qualified
        entry = self.limits.entry(name, prepared.cap, prepared.breaker)
        if not entry.take():
            admitted = False
            if not self._stopping.is_set():
                async with self.step_aside():
                    admitted = await entry.wait()
            if not admitted:
                raise NotStarted(f"{name} on {event.topic}: stopping before attempt {attempt}")
        breaker_generation = entry.breaker.generation if entry.breaker is not None else 0
        generation = entry.limit.generation
        slots = self._slots
        try:
            if not slots.take():
                await slots.wait()
            if self._stopping.is_set():  # checked after the wait: the slot may come long after
                slots.release()
                raise NotStarted(f"{name} on {event.topic}: stopping before attempt {attempt}")
            self.running += 1
            try:
                result = await self.invoker.call(
                    name,
                    prepared.url,
                    headers,
                    event.body,
                    attempt=attempt,
                    header_lines=prepared.lines or "",
                )
            finally:
                self.running -= 1
                slots.release()
            held = entry.held(result, breaker_generation)
            entry.outcome(result, generation, prepared.policy)
            return result, held
        finally:
            entry.release()

    async def deliver(
        self, event: Event, function: FunctionInfo, first_attempt: int = 1
    ) -> Delivery:
        """Invoke with in-process retries until the outcome is final (Kafka, cron).

        Raises `Abandoned` if `stop` is called while waiting to retry (`NotStarted` if before
        an attempt began).
        """
        attempt, returns = first_attempt, 0
        while True:
            delivery = await self.attempt(event, function, attempt, returns)
            returns = delivery.returns
            if delivery.outcome.final:
                self.finished(delivery)
                return delivery
            await self._backoff(delivery, attempt)
            attempt += 1

    async def _backoff(self, delivery: Delivery, attempt: int) -> None:
        """Wait out a retry delay unless the source stops first."""
        if not self._stopping.is_set():
            try:
                async with self.step_aside():
                    await asyncio.wait_for(self._stopping.wait(), delivery.outcome.delay)
            except TimeoutError:
                return
        raise Abandoned(
            f"{delivery.function.qualified} on {delivery.event.topic}: stopping during the "
            f"back-off after attempt {attempt}"
        )

    async def dispatch(self, event: Event) -> Sequence[Delivery]:
        """Every subscribed function invoked to a final outcome, concurrently."""
        self.metrics.received.inc(event.topic)
        functions = self.match(event.topic)
        if not functions:
            self.metrics.unmatched.inc(event.topic)
            log.debug("no function subscribes to %s", event.topic)
            return ()
        if len(functions) == 1:  # the common case, without a task per event
            return (await self.deliver(event, functions[0]),)
        return await asyncio.gather(*(self.deliver(event, fn) for fn in functions))

    def finished(self, delivery: Delivery) -> None:
        """Record a final delivery: metrics, logs, subscribers."""
        result = delivery.result
        name = delivery.function.qualified
        self.metrics.invocations.inc(name, str(result.reported_status))
        if delivery.ok:
            if self.settings.print_response:
                log.info(
                    "%s on %s: %s in %.3fs",
                    name,
                    delivery.event.topic,
                    result.status,
                    result.duration,
                )
        else:
            log.error("%s on %s: %s", name, delivery.event.topic, delivery.outcome.reason)
            if tracing.ENABLED:
                tracing.dead_letter(name, delivery.outcome.reason)
        if self.print_response_body and result.body:
            log.info("%s response: %s", name, result.body.decode("utf-8", "replace"))
        for subscriber in self.subscribers:
            try:
                subscriber.response(delivery)
            except Exception:
                log.exception("response subscriber %r failed", subscriber)

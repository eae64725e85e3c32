"""Matches an event's topic to functions and invokes them (the connector SDK's heart).

Sources hand the `Controller` an `Event`; it finds the subscribed functions in the current
`TopicMap`, invokes them concurrently (at most `max_inflight` calls at once across the
process), and returns one `Delivery` per function with its final outcome. Sources decide what a
final failure means on their broker (dead-letter topic, DLQ, log) and acknowledge only after
every delivery is final.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry

from connectors.core.config import GatewaySettings, RetrySettings
from connectors.core.connector_config import ConnectorSettings
from connectors.core.connector_metrics import ConnectorMetrics
from connectors.core.errors import FerryError
from connectors.core.gateway import GatewayClient
from connectors.core.invoker import InvocationRequest, InvocationResult, Invoker
from connectors.core.retry import Outcome, RetryPolicy, Verdict
from connectors.core.topicmap import FunctionInfo, TopicMap, TopicMapRefresher

log = logging.getLogger("ferry.connector")

POLICIES_REMEMBERED = 10_000  # functions whose retry policy is kept; past it, start over


@dataclass(frozen=True)
class Event:
    """One message from a source, addressed by topic."""

    topic: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    call_id: str = ""


@dataclass(frozen=True)
class Delivery:
    """The outcome of one function for one event (after retries, when in-process)."""

    event: Event
    function: FunctionInfo
    result: InvocationResult
    outcome: Outcome

    @property
    def ok(self) -> bool:
        return self.outcome.verdict is Verdict.SUCCESS


class Abandoned(FerryError):
    """Retries were cut short because the source is stopping: the event has no final
    outcome and must not be acknowledged (the broker delivers it again)."""


class ConnectorConfig(Protocol):
    """The setting groups every connector's config object nests."""

    @property
    def connector(self) -> ConnectorSettings: ...

    @property
    def gateway(self) -> GatewaySettings: ...

    @property
    def retry(self) -> RetrySettings: ...


class ResponseSubscriber(Protocol):
    """Told of every final delivery; must not block (queue work of its own if slow)."""

    def response(self, delivery: Delivery) -> None: ...


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
        self._limit = asyncio.Semaphore(settings.max_inflight)
        self.running = 0  # invocations under way; the inflight gauge reads it when scraped
        metrics.inflight.set_function(lambda: self.running)
        # qualified name -> (the FunctionInfo it was made for, its policy): a topic-map
        # rebuild makes new FunctionInfo objects, so a changed annotation is seen at once
        self._policies: dict[str, tuple[FunctionInfo, RetryPolicy]] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Cut every back-off short: `deliver` raises `Abandoned` instead of waiting, so a
        drain never waits out a retry delay. Calls already running finish normally."""
        self._stopping.set()

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
        return cls(
            connector=connector,
            settings=settings,
            invoker=Invoker(client),
            policy=RetryPolicy.from_settings(config.retry),
            topics=topics,
            metrics=metrics,
            print_response_body=gateway.print_response_body,
        )

    @property
    def gateway(self) -> GatewayClient:
        return self.invoker.client

    def subscribe(self, subscriber: ResponseSubscriber) -> None:
        self.subscribers.append(subscriber)

    def match(self, topic: str) -> tuple[FunctionInfo, ...]:
        return self.topics.current.match(topic)

    def policy_for(self, function: FunctionInfo) -> RetryPolicy:
        """The process's policy with the function's retry annotations laid over it, made
        once per function (per topic map: a rebuilt map's functions are new objects)."""
        known = self._policies.get(function.qualified)
        if known is not None and known[0] is function:
            return known[1]
        policy = self.policy.for_function(function.annotations)
        if len(self._policies) >= POLICIES_REMEMBERED:
            self._policies.clear()
        self._policies[function.qualified] = (function, policy)
        return policy

    def request(self, event: Event, function: FunctionInfo) -> InvocationRequest:
        headers: list[tuple[str, str]] = [
            ("X-Topic", event.topic),
            ("X-Connector", self.connector),
            ("Content-Type", self.settings.content_type),
            *event.headers,
        ]
        if event.call_id:
            headers.append(("X-Call-Id", event.call_id))
        if self.settings.asynchronous_invocation and self.settings.callback_url:
            headers.append(("X-Callback-Url", self.settings.callback_url))
        return InvocationRequest(
            function=function.qualified,
            body=event.body,
            headers=tuple(headers),
            asynchronous=self.settings.asynchronous_invocation,
        )

    async def attempt(self, event: Event, function: FunctionInfo, attempt: int) -> Delivery:
        """One invocation, bounded by max_inflight; the outcome says whether to retry."""
        limit = self._limit
        await limit.acquire()
        self.running += 1
        try:
            result = await self.invoker.invoke(self.request(event, function), attempt=attempt)
        finally:
            self.running -= 1
            limit.release()
        self.metrics.duration_by(function.qualified).observe(result.duration)
        outcome = result.outcome(self.policy_for(function))
        if outcome.verdict is Verdict.RETRY:
            self.metrics.retries_by(function.qualified).inc()
            log.warning(
                "%s on %s: %s (attempt %d), retry in %.2fs",
                function.qualified,
                event.topic,
                outcome.reason,
                attempt,
                outcome.delay,
            )
        return Delivery(event, function, result, outcome)

    async def deliver(
        self, event: Event, function: FunctionInfo, first_attempt: int = 1
    ) -> Delivery:
        """Invoke with in-process retries until the outcome is final (Kafka, cron).

        Raises `Abandoned` if `stop` is called while waiting to retry.
        """
        attempt = first_attempt
        while True:
            delivery = await self.attempt(event, function, attempt)
            if delivery.outcome.final:
                self.finished(delivery)
                return delivery
            await self._backoff(delivery, attempt)
            attempt += 1

    async def _backoff(self, delivery: Delivery, attempt: int) -> None:
        """Wait out a retry delay unless the source stops first."""
        if not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), delivery.outcome.delay)
            except TimeoutError:
                return
        raise Abandoned(
            f"{delivery.function.qualified} on {delivery.event.topic}: stopping during the "
            f"back-off after attempt {attempt}"
        )

    async def dispatch(self, event: Event) -> Sequence[Delivery]:
        """Every subscribed function invoked to a final outcome, concurrently."""
        self.metrics.received_by(event.topic).inc()
        functions = self.match(event.topic)
        if not functions:
            self.metrics.unmatched_by(event.topic).inc()
            log.debug("no function subscribes to %s", event.topic)
            return ()
        if len(functions) == 1:  # the common case, without a task per event
            return (await self.deliver(event, functions[0]),)
        return await asyncio.gather(*(self.deliver(event, fn) for fn in functions))

    def finished(self, delivery: Delivery) -> None:
        """Record a final delivery: metrics, logs, subscribers."""
        result = delivery.result
        name = delivery.function.qualified
        self.metrics.invocations_by(name, str(result.reported_status)).inc()
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
        if self.print_response_body and result.body:
            log.info("%s response: %s", name, result.body.decode("utf-8", "replace"))
        for subscriber in self.subscribers:
            try:
                subscriber.response(delivery)
            except Exception:
                log.exception("response subscriber %r failed", subscriber)

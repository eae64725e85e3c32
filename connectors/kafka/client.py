"""The edge to aiokafka: clients built from settings, and its exceptions translated.

Everything that knows aiokafka's constructor arguments or error classes lives here, so the
rest of the connector deals in ferry's own errors (`ConfigError`, `StartupError`,
`KafkaUnavailable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.helpers import create_ssl_context

from connectors.core.errors import ConfigError, FerryError, StartupError
from connectors.core.secrets import read_secret
from connectors.kafka.config import KafkaSecuritySettings, KafkaSettings

# What one fetch may bring: about what the connector takes at a time, not aiokafka's 1 MiB per
# partition and 50 MiB in all. A partition holding max_uncommitted records is paused, and
# aiokafka drops what it had fetched for a paused partition (to fetch it again after the
# resume): with the defaults, a 50,000-record benchmark read three times the bytes it used,
# and its lanes ran dry while the broker sent the surplus. A single larger record (batch)
# still comes whole.
MAX_PARTITION_FETCH_BYTES = 256 * 1024
FETCH_MAX_BYTES = 256 * 1024
# The producer copies records to the dead-letter topic (and responses to the response topic):
# it accepts records up to 50 MiB (a fetch brings any record whole, whatever its size), plus
# room for the headers ferry adds. aiokafka's own default (1 MiB) would refuse a record the
# consumer had no trouble receiving.
MAX_COPY_BYTES = 51 * 1024 * 1024
# Errors that say the write can never succeed as it is: retrying the same bytes cannot help.
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


class KafkaUnavailable(FerryError):
    """A Kafka request failed (broker down, rebalance in progress, timeout)."""


class RecordRefused(FerryError):
    """A write that can never succeed as it is (too large for this client or the broker)."""


def _ssl_context(security: KafkaSecuritySettings) -> ssl.SSLContext:
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=security.tls_ca_file or None,
            certfile=security.tls_cert_file or None,
            keyfile=security.tls_key_file or None,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls files cannot be used: {exc}") from None
    return context


def security_options(security: KafkaSecuritySettings) -> dict[str, Any]:
    """aiokafka's security arguments, shared by the consumer and producer."""
    sasl = security.sasl_mechanism != "none"
    protocol = {
        (False, False): "PLAINTEXT",
        (False, True): "SSL",
        (True, False): "SASL_PLAINTEXT",
        (True, True): "SASL_SSL",
    }[(sasl, security.tls)]
    options: dict[str, Any] = {"security_protocol": protocol}
    if security.tls:
        options["ssl_context"] = _ssl_context(security)
    if sasl:
        options["sasl_mechanism"] = security.sasl_mechanism.upper()
        options["sasl_plain_username"] = read_secret(
            "sasl_username_file", security.sasl_username_file
        ).strip()
        options["sasl_plain_password"] = read_secret(
            "sasl_password_file", security.sasl_password_file
        ).strip()
    return options


def build_consumer(
    kafka: KafkaSettings, security: dict[str, Any], client_id: str
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=list(kafka.broker_hosts),
        group_id=kafka.group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if kafka.initial_offset == "oldest" else "latest",
        session_timeout_ms=int(kafka.session_timeout * 1000),
        heartbeat_interval_ms=int(kafka.heartbeat_interval * 1000),
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        fetch_max_bytes=FETCH_MAX_BYTES,
        **security,
    )


def build_producer(
    kafka: KafkaSettings, security: dict[str, Any], client_id: str
) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=list(kafka.broker_hosts),
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        max_request_size=MAX_COPY_BYTES,
        **security,
    )


async def produce(
    producer: AIOKafkaProducer,
    topic: str,
    value: bytes | None,
    *,
    key: bytes | None = None,
    headers: list[tuple[str, bytes | None]] | None = None,
) -> None:
    """Write one record and wait for the broker: `RecordRefused` when it can never be
    written as it is, `KafkaUnavailable` when a later try may succeed."""
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    except _TOO_LARGE as exc:
        raise RecordRefused(_describe(exc)) from None
    except KafkaError as exc:
        raise KafkaUnavailable(f"produce to {topic}: {_describe(exc)}") from None


async def start_client(
    client: AIOKafkaConsumer | AIOKafkaProducer, what: str, hosts: tuple[str, ...], bound: float
) -> None:
    """Start a client within `bound` seconds or raise StartupError (one line, exit 2)."""
    where = f"broker_hosts={','.join(hosts)}"
    try:
        with _quiet_client_logs():
            await asyncio.wait_for(client.start(), bound)
    except TimeoutError:
        await stop_quietly(client)
        raise StartupError(f"{where}: no {what} connection within {bound:g}s") from None
    except KafkaError as exc:
        await stop_quietly(client)
        raise StartupError(f"{where}: cannot start the {what}: {_describe(exc)}") from None


@contextlib.contextmanager
def _quiet_client_logs() -> Iterator[None]:
    """aiokafka logs each failed connection attempt; at start-up the one line we print
    (and exit 2 with) says it better."""
    noisy = logging.getLogger("aiokafka")
    level = noisy.level
    noisy.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        noisy.setLevel(level)


async def stop_quietly(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    with contextlib.suppress(KafkaError, OSError, TimeoutError):
        await client.stop()


def subscribe(
    consumer: AIOKafkaConsumer, topics: tuple[str, ...], listener: ConsumerRebalanceListener
) -> None:
    consumer.subscribe(topics=list(topics), listener=listener)


async def translate(what: str, call: Any) -> Any:
    """Await `call`, turning aiokafka's errors into `KafkaUnavailable`."""
    try:
        return await call
    except KafkaError as exc:
        raise KafkaUnavailable(f"{what}: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").strip()
    return text or exc.__class__.__name__

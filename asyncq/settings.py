"""The settings every process that queues or reads calls shares: NATS, plus the queue's streams
and the large-body bucket. Declared once here, where the queued call lives; the worker, the
front door and the shell commands group them into their own config objects."""

from __future__ import annotations

import re
from dataclasses import dataclass

from asyncq.delayed import delayed_stream_name
from asyncq.layout import DEAD_LETTER_STREAM, DEFAULT_STREAM
from connectors.core.settings import positive_duration, retention, setting
from connectors.jetstream.settings import NatsSettings

DEFAULT_BUCKET = "faas-bodies"
DEFAULT_TTL = 7 * 24 * 3600.0
DEFAULT_MAX_DELAY = 7 * 24 * 3600.0
BUCKET_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what a bucket (and its setting) may be called


def bucket_name(text: str) -> str:
    if not BUCKET_NAME.fullmatch(text):
        raise ValueError("expected letters, digits, - and _ (at most 64)")
    return text


def stream_name(text: str) -> str:
    """A stream name (empty: the default) as NATS takes it in a subject: no `.`, `*`, `>`."""
    return bucket_name(text) if text else text


@dataclass(frozen=True)
class QueueNatsSettings(NatsSettings):
    """The shared NATS settings plus the streams of the async queue."""

    nats_stream: str = setting(
        "nats_stream", DEFAULT_STREAM, "stream of queued requests", aliases=("faas_nats_channel",)
    )
    dead_letter_stream: str = setting(
        "dead_letter_stream", DEAD_LETTER_STREAM, "stream that keeps dead letters"
    )
    large_body_bucket: str = setting(
        "large_body_bucket",
        DEFAULT_BUCKET,
        "JetStream object store for call bodies too large for one message",
        bucket_name,
    )
    large_body_ttl: float = setting(
        "large_body_ttl",
        DEFAULT_TTL,
        "how long a stored body is kept at most (deleted sooner once its call is done)",
        retention,
        shown="168h",
    )
    function_state_bucket: str = setting(
        "function_state_bucket",
        "ferry-functions",
        "key-value bucket of the functions paused by hand (ferry functions pause), which every "
        "worker follows",
        bucket_name,
    )
    delayed_stream: str = setting(
        "delayed_stream",
        "",
        "stream ferry keeps delayed calls on when the request stream has no message schedules "
        "(NATS before 2.12, or OpenFaaS Pro's OF_ stream); empty: {nats_stream}-delayed",
        stream_name,
        shown="{nats_stream}-delayed",
    )
    max_delay: float = setting(
        "max_delay",
        DEFAULT_MAX_DELAY,
        "longest X-Delay (or X-Not-Before ahead) a call may ask for; further is refused",
        positive_duration,
        shown="168h",
    )

    @property
    def delayed_stream_name(self) -> str:
        return delayed_stream_name(self.nats_stream, self.delayed_stream)

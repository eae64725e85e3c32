"""The worker's durable pull consumer on the request stream.

nats-py exceptions stop here; callers see `StartupError`.
"""

from __future__ import annotations

import logging

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError

from connectors.core.errors import StartupError
from connectors.jetstream.connect import describe

log = logging.getLogger("queue_worker.jetstream")


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    subject: str,
    *,
    ack_wait: float,
) -> None:
    """Create or update the durable pull consumer.

    Create-or-update is idempotent, so many replicas may start at once, and a changed
    `ack_wait` takes effect on the next start. `max_ack_pending` is unlimited: each worker
    bounds what it holds by its own slots.
    """
    config = js_api.ConsumerConfig(
        durable_name=durable,
        filter_subject=subject,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=-1,
        max_waiting=512,
    )
    try:
        try:
            await js.add_consumer(stream, config)
        except BadRequestError as exc:
            log.warning("keeping consumer %s as it is: %s", durable, exc.description)
    except (NatsError, TimeoutError) as exc:
        reason = describe(exc)
        raise StartupError(f"cannot create consumer {durable} on {stream}: {reason}") from None

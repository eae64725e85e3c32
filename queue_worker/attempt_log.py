"""The log line for one invocation attempt: debug on success, warning on a retry, error when
the call is given up. Values from the message are escaped by the console formatter, and call
ids other publishers queued (any length) are cut to 128 characters."""

from __future__ import annotations

import logging

from asyncq.codec import QueueRequest
from connectors.core import tracing
from connectors.core.invoker import InvocationResult
from connectors.core.retry import Outcome, Verdict
from connectors.core.targets import short_id
from queue_worker.process_span import attempt_outcome

log = logging.getLogger("ferry.queue_worker")


def log_attempt(
    request: QueueRequest, result: InvocationResult, outcome: Outcome, print_body: bool
) -> None:
    if tracing.ENABLED:
        attempt_outcome(result, outcome)
    if outcome.verdict is Verdict.SUCCESS:
        if log.isEnabledFor(logging.DEBUG):  # the arguments cost more than the check
            log.debug(
                "%s call %s: status %s in %.3fs (attempt %d)",
                request.function,
                short_id(request.call_id),
                result.status,
                result.duration,
                result.attempt,
            )
        if print_body:
            log.info(
                "%s call %s body: %s",
                request.function,
                short_id(request.call_id),
                result.body.decode("utf-8", "replace"),
            )
        return
    detail = result.error or f"status {result.status}"
    if outcome.verdict is Verdict.RETRY:
        log.warning(
            "%s call %s: %s (attempt %d), retrying in %.2fs",
            request.function,
            short_id(request.call_id),
            detail,
            result.attempt,
            outcome.delay,
        )
    else:
        log.error("%s call %s: %s", request.function, short_id(request.call_id), outcome.reason)

"""Names on NATS: the request stream and its subjects, durables, and the dead-letter stream."""

from __future__ import annotations

import re

DEFAULT_STREAM = "faas-request"
DEFAULT_DURABLE = "faas-workers"
DEAD_LETTER_STREAM = "faas-dead-letter"

# Headers ferry writes on dead letters (and reads back when replaying them).
DEAD_REASON = "Ferry-Dead-Reason"
DEAD_ATTEMPTS = "Ferry-Attempts"
DEAD_LAST_STATUS = "Ferry-Last-Status"
DEAD_SUBJECT = "Ferry-Original-Subject"
DEAD_FUNCTION = "Ferry-Function"
DEAD_CALL_ID = "Ferry-Call-Id"
DEAD_AT = "Ferry-Dead-At"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def subject_token(text: str) -> str:
    """A subject-safe rendering of a name (NATS tokens cannot hold spaces, `*` or `>`)."""
    cleaned = _UNSAFE.sub("_", text).strip(".")
    return re.sub(r"\.{2,}", ".", cleaned) or "_"


def queue_subject(stream: str, queue_name: str) -> str:
    """`faas-request` for the default queue, `faas-request.NAME` for a named one."""
    return f"{stream}.{subject_token(queue_name)}" if queue_name else stream


def durable_name(queue_name: str) -> str:
    return (
        f"{subject_token(queue_name).replace('.', '_')}-workers" if queue_name else DEFAULT_DURABLE
    )


def dead_letter_subject(stream: str, function: str) -> str:
    return f"{stream}.{subject_token(function) if function else '_unknown'}"

"""Names on NATS: the request stream and its subjects, durables, and the dead-letter stream."""

from __future__ import annotations

import hashlib
import re

from connectors.core.targets import is_function_name

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
# the message itself did not fit beside the dead letter's headers: what it was, instead of it
DEAD_BODY_OMITTED = "Ferry-Body-Omitted"

# A named queue is one subject token and part of a durable name; what is not such a name is
# replaced by a hash of bounded length, so no input can make a subject NATS refuses (a subject
# longer than the server's control line closes the connection).
_QUEUE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
HASHED_PREFIX = "_h"


def hashed_token(text: str) -> str:
    """A bounded subject token standing for `text`, the same wherever it is computed."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{HASHED_PREFIX}{digest[:32]}"


def subject_token(text: str) -> str:
    """`text` if it is a plain name (letters, digits, `_`, `-`; at most 64), else its hash."""
    return text if _QUEUE_TOKEN.fullmatch(text) else hashed_token(text)


def queue_subject(stream: str, queue_name: str) -> str:
    """`faas-request` for the default queue, `faas-request.NAME` for a named one."""
    return f"{stream}.{subject_token(queue_name)}" if queue_name else stream


def durable_name(queue_name: str) -> str:
    return f"{subject_token(queue_name)}-workers" if queue_name else DEFAULT_DURABLE


def dead_letter_subject(stream: str, function: str) -> str:
    """`faas-dead-letter.{function}` for a valid function name (`name` or `name.namespace`);
    any other name is replaced by its hash (the full name is in the `Ferry-Function` header)."""
    if not function:
        return f"{stream}._unknown"
    return f"{stream}.{function if is_function_name(function) else hashed_token(function)}"


# Per-function subjects (fair scheduling): `{stream}.fn.{function}` for the default queue and
# `{stream}.fn.{queue}.{function}` for a named queue. Three or four tokens, so they never match
# the plain subjects (`{stream}`, `{stream}.*`) that Go publishers and named queues use, and a
# default-queue subject (three tokens) never matches a named queue's (four).
FUNCTION_TOKEN = "fn"


def function_subjects(stream: str) -> str:
    """The stream subject that holds every per-function subject."""
    return f"{stream}.{FUNCTION_TOKEN}.>"


def function_subject(stream: str, queue_name: str, function: str) -> str:
    """Where a call for `function` on `queue_name` waits in fair mode."""
    token = subject_token(function)
    if queue_name:
        return f"{stream}.{FUNCTION_TOKEN}.{subject_token(queue_name)}.{token}"
    return f"{stream}.{FUNCTION_TOKEN}.{token}"


def queue_functions_filter(stream: str, queue_name: str) -> str:
    """A subject filter matching every per-function subject of one queue (and no other)."""
    if queue_name:
        return f"{stream}.{FUNCTION_TOKEN}.{subject_token(queue_name)}.*"
    return f"{stream}.{FUNCTION_TOKEN}.*"


def function_durable(queue_durable: str, subject: str) -> str:
    """The durable consumer of one per-function subject: the queue's durable and the
    function's token, e.g. `faas-workers-fn-figlet`."""
    return f"{queue_durable}-{FUNCTION_TOKEN}-{subject.rsplit('.', 1)[-1]}"

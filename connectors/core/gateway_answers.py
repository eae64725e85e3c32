"""Answers ferry's gateway makes itself, marked so that a caller can tell them from a function's.

A 502 from `ferry gateway` may mean the function's answer was over the gateway's
`max_response_bytes` (the same call gives the same answer: retrying cannot help), that the
gateway's `upstream_timeout` ran out (the function may still be running), or that the function
could not be reached. OpenFaaS marks the answers its own components make with
`X-OpenFaaS-Internal: <component>` (faas-provider's proxy says `proxy`); ferry's gateway says
`ferry-gateway` and adds why in `X-Ferry-Proxy-Error`, which the queue worker and connectors
read (`Invoker`) to treat an answer too large as final and a timeout by `retry_on_timeout`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

INTERNAL_HEADER: Final = "X-OpenFaaS-Internal"
FERRY_GATEWAY: Final = "ferry-gateway"
PROXY_ERROR_HEADER: Final = "X-Ferry-Proxy-Error"


class ProxyError(enum.Enum):
    """Why ferry's gateway answered for the function."""

    TOO_LARGE = "answer-too-large"
    TIMEOUT = "upstream-timeout"
    UNREACHABLE = "upstream-unreachable"


def marked(error: ProxyError) -> tuple[tuple[str, str], ...]:
    """The headers of an answer the gateway makes itself because of `error`."""
    return ((INTERNAL_HEADER, FERRY_GATEWAY), (PROXY_ERROR_HEADER, error.value))


def proxy_error(headers: Mapping[str, str]) -> ProxyError | None:
    """The gateway's reason if `headers` (case-insensitive) are those of an answer ferry's
    gateway made itself; None for a function's answer."""
    if headers.get(INTERNAL_HEADER) != FERRY_GATEWAY:
        return None
    try:
        return ProxyError(headers.get(PROXY_ERROR_HEADER, ""))
    except ValueError:
        return None

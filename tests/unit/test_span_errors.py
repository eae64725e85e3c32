"""What a span may say of an error: never the URL of a request that could not be sent."""

from __future__ import annotations

from connectors.core.invoker import InvocationResult, span_error


def test_a_request_that_cannot_be_sent_is_named_without_its_url() -> None:
    result = InvocationResult(
        function="echo",
        status=None,
        attempt=1,
        duration=0.0,
        error="the request cannot be sent: malformed URL 'http://gw/function/echo?token=s3cret'",
        final=True,
    )
    assert span_error(result) == "the request cannot be sent"


def test_other_errors_are_kept_as_they_are() -> None:
    result = InvocationResult(
        function="echo", status=None, attempt=1, duration=0.0, error="timed out after 5s"
    )
    assert span_error(result) == "timed out after 5s"

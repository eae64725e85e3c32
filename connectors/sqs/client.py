"""The SQS edge: the only module that talks to aioboto3, translating its errors into `SqsError`.

Everything above it sees plain dicts and ferry's own exceptions, so a throttled receive or an
expired receipt handle is a value to log and handle, never a botocore type leaking upward.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from connectors.core.errors import FerryError

SYSTEM_ATTRIBUTES = ("ApproximateReceiveCount", "MessageGroupId", "SentTimestamp")
_REGION_IN_HOST = re.compile(
    r"(?:^|\.)sqs[.-]([a-z]{2}(?:-[a-z]+)+-\d)\.|^([a-z]{2}(?:-[a-z]+)+-\d)\.queue\."
)


class SqsError(FerryError):
    """An SQS call failed; `code` is the AWS error code when the server answered."""

    def __init__(self, operation: str, message: str, code: str = "") -> None:
        super().__init__(f"{operation}: {message}")
        self.code = code


def region_from_url(url: str) -> str:
    """The region an AWS queue URL names (`sqs.eu-west-1.amazonaws.com`), or ''."""
    match = _REGION_IN_HOST.search(urlsplit(url).hostname or "")
    if match is None:
        return ""
    return match.group(1) or match.group(2) or ""


def _translate(operation: str, exc: Exception) -> SqsError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        return SqsError(operation, f"{code}: {error.get('Message', exc)}", code)
    return SqsError(operation, f"{exc.__class__.__name__}: {exc}")


class SqsClient:
    """One aiobotocore SQS client, opened at start and closed at drain."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
    ) -> None:
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self.config = AioConfig(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=pool_size,
        )
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        session = aioboto3.Session()
        try:
            self._client = await self._stack.enter_async_context(
                session.client(
                    "sqs",
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    config=self.config,
                )
            )
        except NoRegionError:
            raise SqsError("connect", "no AWS region: set AWS_REGION") from None
        except (BotoCoreError, ClientError) as exc:
            raise _translate("connect", exc) from None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._stack.aclose()
        self._client = None

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        if self._client is None:
            raise SqsError(operation, "the client is closed")
        try:
            response: dict[str, Any] = await getattr(self._client, operation)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise _translate(operation, exc) from None
        return response

    async def attributes(self, url: str) -> dict[str, str]:
        response = await self._call("get_queue_attributes", QueueUrl=url, AttributeNames=["All"])
        return {str(k): str(v) for k, v in response.get("Attributes", {}).items()}

    async def receive(
        self, url: str, count: int, wait: int, visibility: int
    ) -> list[dict[str, Any]]:
        response = await self._call(
            "receive_message",
            QueueUrl=url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=list(SYSTEM_ATTRIBUTES),
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    async def delete_batch(self, url: str, receipts: Sequence[tuple[str, str]]) -> list[str]:
        """Delete up to ten messages; return the ids SQS did not delete, with reasons."""
        response = await self._call(
            "delete_message_batch",
            QueueUrl=url,
            Entries=[{"Id": i, "ReceiptHandle": r} for i, r in receipts],
        )
        return [
            f"{f.get('Id')}: {f.get('Code')} {f.get('Message', '')}".strip()
            for f in response.get("Failed", [])
        ]

    async def change_visibility(self, url: str, receipt: str, seconds: int) -> None:
        await self._call(
            "change_message_visibility",
            QueueUrl=url,
            ReceiptHandle=receipt,
            VisibilityTimeout=seconds,
        )

    async def send(
        self,
        url: str,
        body: str,
        attributes: Mapping[str, Mapping[str, Any]],
        *,
        group_id: str = "",
        deduplication_id: str = "",
    ) -> None:
        kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": body}
        if attributes:
            kwargs["MessageAttributes"] = dict(attributes)
        if group_id:
            kwargs["MessageGroupId"] = group_id
        if deduplication_id:
            kwargs["MessageDeduplicationId"] = deduplication_id
        await self._call("send_message", **kwargs)

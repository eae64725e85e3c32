"""`moto_server` (from moto[server]) on a free loopback port, and SQS queues unique to a test."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aioboto3
import pytest

from tests.support.brokers import ChildServer, test_environ, venv_bin

# botocore must never look for instance credentials on the network (benchmarks import this too)
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}


@dataclass
class MotoServer(ChildServer):
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]

    def environment(self) -> dict[str, str]:
        return test_environ()

    @asynccontextmanager
    async def sqs(self) -> AsyncIterator[Any]:
        """An aiobotocore SQS client with explicit test credentials, pointed at moto."""
        session = aioboto3.Session()
        async with session.client("sqs", endpoint_url=self.url, **CREDENTIALS) as client:
            yield client


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


class Queues:
    """Creates queues with names unique to one test; reads their depth and contents."""

    def __init__(self, client: Any, prefix: str = "t") -> None:
        self.client = client
        self.tag = f"{prefix}-{uuid.uuid4().hex[:8]}"

    async def create(
        self, name: str, *, fifo: bool = False, redrive_to: str = "", max_receive: int = 2
    ) -> str:
        full = f"{self.tag}-{name}" + (".fifo" if fifo else "")
        attributes: dict[str, str] = {}
        if fifo:
            attributes["FifoQueue"] = "true"
            attributes["ContentBasedDeduplication"] = "true"
        if redrive_to:
            arn = await self.arn(redrive_to)
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive)}
            )
        response = await self.client.create_queue(QueueName=full, Attributes=attributes)
        return str(response["QueueUrl"])

    async def arn(self, url: str) -> str:
        attrs = await self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    async def send(self, url: str, body: str, group: str = "", **attributes: str) -> str:
        kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": body}
        if attributes:
            kwargs["MessageAttributes"] = {
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
            }
        if group:
            kwargs["MessageGroupId"] = group
        response = await self.client.send_message(**kwargs)
        return str(response["MessageId"])

    async def depth(self, url: str) -> int:
        """Messages still in the queue, visible or not (not yet deleted).

        moto reads each count at its own instant, so a message whose visibility timeout ends
        between the visible count and the not-visible count is in neither: one read can say 0
        for a queue that holds it. Two reads a little apart cannot both miss it."""
        first = await self._counted(url)
        await asyncio.sleep(0.05)
        return max(first, await self._counted(url))

    async def _counted(self, url: str) -> int:
        attrs = await self.client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        return sum(int(v) for v in attrs["Attributes"].values())

    async def peek(self, url: str) -> list[dict[str, Any]]:
        """Messages visible now, left visible (visibility 0), with their attributes."""
        response = await self.client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=0,
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

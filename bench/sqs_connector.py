"""SQS connector throughput against moto_server, beside the raw receive+delete rate of the same
server in the same run. Not a test: prints figures. Everything binds to 127.0.0.1.

moto's receive slows down as a queue grows, so both phases feed the queue while consuming and
keep it shallow (at most `--depth` messages outstanding).

    .venv/bin/python bench/sqs_connector.py --messages 1000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.contract.test_sqs_contract import sqs_env
from tests.support.http import FakeGateway
from tests.support.moto import MotoServer, Queues
from tests.support.ports import eventually
from tests.support.procs import FerryProcess


async def feed(queues: Queues, url: str, total: int, outstanding: Any, depth: int) -> None:
    """Send `total` messages in batches of ten, never more than `depth` outstanding."""
    sent = 0
    while sent < total:
        if sent - outstanding() >= depth:
            await asyncio.sleep(0.005)
            continue
        batch = min(10, total - sent)
        await queues.client.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": f"m{sent + i}"} for i in range(batch)],
        )
        sent += batch


async def raw(queues: Queues, total: int, depth: int) -> float:
    url = await queues.create("raw")
    done = 0
    feeder = asyncio.create_task(feed(queues, url, total, lambda: done, depth))
    started = time.monotonic()
    while done < total:
        response = await queues.client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        messages = response.get("Messages", [])
        if messages:
            await queues.client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            done += len(messages)
    elapsed = time.monotonic() - started
    await feeder
    return total / elapsed


async def connector(
    moto: MotoServer, queues: Queues, gateway: FakeGateway, total: int, depth: int
) -> tuple[float, float]:
    url = await queues.create("connector")
    gateway.subscribe("instant", url.rsplit("/", 1)[-1])
    gateway.function("instant")
    proc = await FerryProcess(
        "sqs-connector",
        sqs_env(moto, gateway, url, max_inflight="64", print_response="false", wait_time="1s"),
    ).start()
    try:
        feeder = asyncio.create_task(
            feed(queues, url, total, lambda: len(gateway.calls_to("instant")), depth)
        )
        await eventually(lambda: gateway.calls_to("instant"), 60, 0.01)
        started = time.monotonic()
        await eventually(lambda: len(gateway.calls_to("instant")) >= total, 600, 0.01)
        invoked = time.monotonic() - started
        await eventually(lambda: _empty(queues, url), 120, 0.01)
        deleted = time.monotonic() - started
        await feeder
        assert len({c.body for c in gateway.calls_to("instant")}) == total
    finally:
        await proc.stop()
        await proc.close()
    return total / invoked, total / deleted


async def _empty(queues: Queues, url: str) -> bool:
    return await queues.depth(url) == 0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=100, help="most messages outstanding")
    args = parser.parse_args()
    moto = MotoServer().start()
    gateway = await FakeGateway().start()
    try:
        async with moto.sqs() as client:
            queues = Queues(client, "bench")
            raw_rate = await raw(queues, args.messages, args.depth)
            invoked_rate, deleted_rate = await connector(
                moto, queues, gateway, args.messages, args.depth
            )
    finally:
        await gateway.stop()
        moto.stop()
    print(f"messages: {args.messages}, at most {args.depth} outstanding (queue kept shallow)")
    print(f"raw receive(10)+delete_batch, one loop: {raw_rate:8.1f} msgs/s")
    print(f"sqs-connector received+invoked:         {invoked_rate:8.1f} msgs/s")
    print(f"sqs-connector received+invoked+deleted: {deleted_rate:8.1f} msgs/s")


if __name__ == "__main__":
    asyncio.run(main())

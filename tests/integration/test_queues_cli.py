"""`ferry queues`: per function, the calls stored on its subject and those a worker holds,
read from NATS alone; names that are not plain tokens read back from their calls."""

from __future__ import annotations

import asyncio
import json

from asyncq.publisher import Publisher, build_request
from tests.support.cli import ferry
from tests.support.http import FakeGateway, held_until
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest


async def test_queues_shows_each_functions_backlog_and_what_workers_hold(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    release = asyncio.Event()
    gateway.function("slow", held_until(release))
    gateway.function("report.finance", held_until(release))
    env = {"nats_url": queue.nats_url, "nats_stream": queue.stream}
    async with queue.worker(max_inflight="2"):
        publisher = Publisher(queue.js, queue.stream)
        assert await publisher.learn_layout()  # the fair worker made the stream hold them
        for i in range(5):
            await publisher.enqueue(build_request("slow", body=b"%d" % i))
        for i in range(3):
            await publisher.enqueue(build_request("report.finance", body=b"%d" % i))
        await eventually(lambda: len(gateway.calls) == 2, what="two calls held")
        shown = await ferry("queues", "--json", env=env)
        table = await ferry("queues", env=env)
        release.set()
    assert shown.status == 0, shown.stderr
    backlog = json.loads(shown.stdout)
    rows = {row["function"]: row for row in backlog["functions"]}
    assert rows["slow"]["stored"] == 5
    assert rows["report.finance"]["stored"] == 3  # its subject token is a hash
    assert rows["slow"]["in_flight"] + rows["report.finance"]["in_flight"] == 2
    assert backlog["functions"][0]["function"] == "slow"  # the largest backlog first
    assert table.status == 0 and "report.finance" in table.stdout and "slow" in table.stdout


async def test_queues_with_nats_out_of_reach_is_one_line_and_exit_2() -> None:
    done = await ferry(
        "queues", env={"nats_url": "nats://127.0.0.1:9", "nats_connect_timeout": "1s"}
    )
    assert done.status == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("ferry: ")

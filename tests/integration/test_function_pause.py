"""Pausing a function by hand (`ferry functions pause`): no call of it runs on any worker
replica, across restarts, until it is resumed; then every one runs."""

from __future__ import annotations

import json
import signal
import uuid

from tests.support.cli import ferry
from tests.support.http import FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest

HELD = 20


async def flows(queue: QueueUnderTest, gateway: FakeGateway, batch: int) -> None:
    """Calls of another function run: the workers are taking work (the check for `held`
    follows an event, not a sleep)."""
    before = len(gateway.calls_to("other"))
    for i in range(5):
        await queue.publish("other", body=b"%d-%d" % (batch, i))
    await eventually(
        lambda: len(gateway.calls_to("other")) >= before + 5, 20, what="calls of other"
    )


async def test_a_paused_functions_calls_wait_on_every_replica_and_across_restarts(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("held")
    gateway.function("other")
    bucket = f"fs-{uuid.uuid4().hex[:8]}"
    env = {"nats_url": queue.nats_url, "nats_stream": queue.stream, "function_state_bucket": bucket}
    paused = await ferry("functions", "pause", "held", env=env)
    assert paused.status == 0, paused.stderr
    for i in range(HELD):
        await queue.publish("held", body=b"%d" % i)

    replica = await queue.spawn_worker(function_state_bucket=bucket, max_inflight="4")
    try:
        await flows(queue, gateway, 0)  # the other replica alone
        async with queue.worker(function_state_bucket=bucket, max_inflight="4"):
            await flows(queue, gateway, 1)  # both replicas
        async with queue.worker(function_state_bucket=bucket, max_inflight="4"):  # restarted
            await flows(queue, gateway, 2)
            assert gateway.calls_to("held") == []
            listed = await ferry("functions", "list", "--json", env=env)
            resumed = await ferry("functions", "resume", "held", env=env)
            await eventually(
                lambda: len(gateway.calls_to("held")) == HELD, 20, what="every held call"
            )
    finally:
        replica.send_signal(signal.SIGTERM)
        _, stderr = await replica.communicate()
    assert replica.returncode == 0, stderr.decode(errors="replace")
    assert "function held is paused" in stderr.decode()
    assert [entry["function"] for entry in json.loads(listed.stdout)] == ["held"]
    assert resumed.status == 0 and "resumed held" in resumed.stdout
    assert await queue.dead_letters() == []
    after = await ferry("functions", "list", env=env)
    assert after.status == 0 and "held" not in after.stdout


async def test_functions_with_bad_input_or_nats_out_of_reach_is_one_line_and_exit_2() -> None:
    env = {"nats_url": "nats://127.0.0.1:9", "nats_connect_timeout": "1s"}
    for args in (("pause", "held"), ("resume", " "), ("pause", "x" * 600)):
        done = await ferry("functions", *args, env=env)
        assert done.status == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("ferry: ")
    missing = await ferry("functions", "pause", env=env)
    assert missing.status == 2

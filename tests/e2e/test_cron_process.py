"""`ferry cron-connector` as a process: bad configuration exits 2 in one line; a good one runs
and stops cleanly on SIGTERM."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.support.http import Call, FakeGateway
from tests.support.ports import eventually, free_port
from tests.support.procs import FerryProcess, run_to_exit


async def _exit(env: dict[str, str]) -> tuple[int, str]:
    return await run_to_exit("cron-connector", env)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"concurrency_policy": "sometimes"}, "concurrency_policy"),
        ({"starting_deadline": "soon"}, "starting_deadline"),
        ({"starting_deadline": "-5s"}, "starting_deadline"),
        ({"default_timezone": "Mars/Olympus"}, "default_timezone"),
        ({"nats_url": "http://127.0.0.1:4222"}, "nats_url"),
        ({"content_type": "text/plain\nX-Injected: 1"}, "content_type"),
    ],
)
async def test_bad_config_exits_2_naming_the_variable(env: dict[str, str], named: str) -> None:
    code, output = await _exit(env)
    assert code == 2
    assert output.count("\n") == 0, output
    assert named in output


async def test_unreachable_nats_at_start_exits_2_in_one_line() -> None:
    code, output = await _exit(
        {"nats_url": f"nats://127.0.0.1:{free_port()}", "nats_connect_timeout": "1s"}
    )
    assert code == 2
    assert output.startswith("ferry: nats_url=nats://127.0.0.1:"), output
    assert "cannot connect to NATS" in output
    assert output.count("\n") == 0, output


async def test_runs_and_stops_cleanly_on_sigterm(gateway: FakeGateway) -> None:
    gateway.subscribe("tick", "cron-function", schedule="* * * * *")
    proc = await FerryProcess(
        "cron-connector",
        {"gateway_url": gateway.url, "health_port": "0", "health_host": "127.0.0.1"},
    ).start()
    try:
        await eventually(lambda: "following '* * * * *'" in proc.output(), 20, what="the job")
        assert await proc.stop() == 0, proc.output()
    finally:
        await proc.close()


async def test_every_2s_fires_through_the_process_on_two_second_slots(gateway: FakeGateway) -> None:
    gateway.subscribe("often", "cron-function", schedule="@every 2s")
    gateway.function("often")
    proc = await FerryProcess(
        "cron-connector",
        {"gateway_url": gateway.url, "health_port": "0", "health_host": "127.0.0.1"},
    ).start()
    try:
        await eventually(lambda: len(gateway.calls_to("often")) >= 2, 30, what="two calls")
        assert await proc.stop() == 0, proc.output()
    finally:
        await proc.close()
    first, second = (datetime.fromisoformat(_slot(c)) for c in gateway.calls_to("often")[:2])
    assert gateway.calls_to("often")[0].headers["X-Cron-Schedule"] == "@every 2s"
    # slots are whole multiples of 2 s since the epoch (a slot missed under load is skipped)
    assert second > first
    assert first.timestamp() % 2 == 0 and second.timestamp() % 2 == 0


def _slot(call: Call) -> str:
    return call.headers["X-Cron-Scheduled-Time"].replace("Z", "+00:00")

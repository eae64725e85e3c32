"""NATS faults a process must not sit through deaf: a client closed for good ends the process
(one line, exit 1, not ready meanwhile); a hung server turns readiness false within about two
ping intervals, and back once it answers, with nothing accepted lost."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nats
import pytest

from connectors.core.settings import load_settings
from connectors.jetstream.connect import NatsLost, connect
from connectors.jetstream.settings import NatsSettings
from tests.support.brokers import NatsServer
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.nats_auth import write
from tests.support.ports import eventually, free_port
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest

pytestmark = pytest.mark.slow


async def test_a_connection_nats_closes_for_good_stops_the_work_and_says_why(
    nats_server: NatsServer,
) -> None:
    connection = await connect(
        load_settings(NatsSettings, {"nats_url": nats_server.url}), name="test"
    )
    forever = asyncio.Event()
    work = asyncio.create_task(connection.while_open(forever.wait()))
    # the server answers an oversized subject with -ERR and drops the client: nats-py closes
    # it for good instead of reconnecting
    await connection.client.publish("x" * 5000, b"")
    with pytest.raises(NatsLost, match=r"closed the connection for good: .*control line"):
        await asyncio.wait_for(work, 20)
    assert not connection.connected
    await connection.close()


@pytest.mark.parametrize("command", ["queue-worker", "gateway"])
async def test_revoked_credentials_end_the_process_with_one_line_and_exit_1(
    command: str, tmp_path: Path, gateway: FakeGateway
) -> None:
    config = tmp_path / "server.conf"
    config.write_text('authorization { user: ferry, password: "pw-first-7f3a" }\n')
    server = NatsServer(args=("-c", str(config))).start()
    health = free_port()
    env = {
        "nats_url": server.url,
        "nats_user_file": write(tmp_path, "user", "ferry\n"),
        "nats_password_file": write(tmp_path, "password", "pw-first-7f3a\n"),
        "health_port": str(health),
        "health_host": "127.0.0.1",
        "gateway_url": gateway.url,
        "port": str(free_port()),
        "listen_host": "127.0.0.1",
        "functions_file": str(write_functions(tmp_path / "f.yml", {"echo": {"url": gateway.url}})),
    }
    if command == "queue-worker":
        del env["functions_file"]
    process = await FerryProcess(command, env).start()
    try:
        async with aiohttp.ClientSession() as http:
            await eventually(lambda: _ready(http, health), 20, what="ready")
            config.write_text('authorization { user: ferry, password: "second" }\n')
            assert server.process is not None
            server.process.send_signal(signal.SIGHUP)  # reload: the old password is refused
            await eventually(lambda: _not_ready(http, health), 20, what="not ready")
        assert process.process is not None
        code = await asyncio.wait_for(process.process.wait(), 30)
        output = process.output()
        assert code == 1, output
        assert "Traceback" not in output, output
        [line] = [line for line in output.splitlines() if "stopped:" in line]
        assert "NATS closed the connection for good" in line
        assert "authorization violation" in line
        assert "pw-first-7f3a" not in output
    finally:
        await process.close()
        server.cleanup()


async def _status(http: aiohttp.ClientSession, port: int) -> int:
    try:
        async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
            return response.status
    except aiohttp.ClientError:
        return 0  # not listening (any more)


async def _ready(http: aiohttp.ClientSession, port: int) -> bool:
    return await _status(http, port) == 200


async def _not_ready(http: aiohttp.ClientSession, port: int) -> bool:
    return await _status(http, port) != 200


@contextlib.asynccontextmanager
async def _queue_on_own_server(
    gateway: FakeGateway, tmp_path: Path
) -> AsyncIterator[tuple[NatsServer, QueueUnderTest, str]]:
    """A nats-server of the test's own (it will be stopped), its queue, and a functions file
    naming `echo` on `gateway`."""
    server = NatsServer().start()
    assert server.process is not None
    nc = await nats.connect(server.url)
    try:
        gateway.function("echo")
        queue = await QueueUnderTest(nc, server.url, gateway.url).setup()
        functions = write_functions(tmp_path / "functions.yml", {"echo": {"url": gateway.url}})
        yield server, queue, str(functions)
    finally:
        await nc.close()
        server.cleanup()


async def test_a_hung_server_turns_readiness_false_within_two_pings_and_loses_nothing_accepted(
    gateway: FakeGateway, tmp_path: Path
) -> None:
    async with _queue_on_own_server(gateway, tmp_path) as (server, queue, functions):
        env = gateway_env(
            queue, functions_file=functions, nats_ping_interval="1s", publish_timeout="1s"
        )
        accepted: list[str] = []
        async with (
            running_gateway(env) as front,
            queue.worker(nats_ping_interval="1s") as worker,
            aiohttp.ClientSession() as http,
        ):

            async def post(count: int) -> None:
                for _ in range(count):
                    async with http.post(f"{front.url}/async-function/echo", data=b"x") as r:
                        if r.status == 202:
                            accepted.append(r.headers["X-Call-Id"])

            await post(10)
            server.pause()
            try:
                await eventually(
                    lambda: not worker.ready() and not front.ready(), 20, what="not ready"
                )
                await post(5)  # refused (503) or accepted: whatever is accepted must run
            finally:
                server.resume()
            await eventually(lambda: worker.ready() and front.ready(), 30, what="ready again")
            await post(10)
            await eventually(
                lambda: {c.headers["X-Call-Id"] for c in gateway.calls_to("echo")} >= set(accepted),
                30,
                what="every accepted call run",
            )
    assert len(accepted) >= 20


async def test_calls_waiting_for_a_hung_jetstream_show_in_a_metric_until_it_answers(
    gateway: FakeGateway, tmp_path: Path
) -> None:
    async with _queue_on_own_server(gateway, tmp_path) as (server, queue, functions):
        env = gateway_env(queue, functions_file=functions, publish_timeout="10s")
        async with running_gateway(env) as front, aiohttp.ClientSession() as http:

            def waiting() -> float | None:
                return front.registry.get_sample_value("gateway_publishes_waiting")

            async def post() -> int:
                async with http.post(f"{front.url}/async-function/echo", data=b"x") as r:
                    return r.status

            assert waiting() == 0
            server.pause()
            try:
                posts = [asyncio.create_task(post()) for _ in range(3)]
                await eventually(lambda: waiting() == 3, 10, what="three calls waiting")
            finally:
                server.resume()
            statuses = await asyncio.gather(*posts)
            assert set(statuses) <= {202, 503}
            await eventually(lambda: waiting() == 0, 10, what="no call waiting")

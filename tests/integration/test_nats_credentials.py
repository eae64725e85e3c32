"""Every way to authenticate to NATS, and TLS, works from files; a wrong secret is one line.

Each server here is a real nats-server configured by the test; the worker under test reads its
credentials from files as a mounted Kubernetes secret would give them (trailing newline
included), connects, and runs a call through a real gateway.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import trustme

from tests.support.brokers import NatsServer, test_environ
from tests.support.http import FakeGateway
from tests.support.nats_auth import Decentralized, user_nkey, write
from tests.support.ports import eventually
from tests.support.procs import run_to_exit
from tests.support.queue import QueueUnderTest

TOKEN = "s3cr3t-t0ken-value"
PASSWORD = "pa55-w0rd-value"


@pytest.fixture
def servers() -> Iterator[list[NatsServer]]:
    started: list[NatsServer] = []
    yield started
    for server in started:
        server.cleanup()


def start(servers: list[NatsServer], *args: str, scheme: str = "nats") -> NatsServer:
    server = NatsServer(args=args, scheme=scheme).start()
    servers.append(server)
    return server


async def runs_a_call(
    server: NatsServer, gateway: FakeGateway, env: dict[str, str], **client: Any
) -> None:
    """The test's own client stores a call; a worker configured only by `env` runs it."""
    nc = await nats.connect(server.url, **client)
    try:
        queue = await QueueUnderTest(nc, server.url, gateway.url).setup()
        gateway.function("echo")
        await queue.publish("echo", b"hello")
        async with queue.worker(**env):
            await eventually(lambda: gateway.calls_to("echo"), what="the call")
    finally:
        await nc.close()


async def test_a_token_from_a_file_connects(
    servers: list[NatsServer], gateway: FakeGateway, tmp_path: Path
) -> None:
    server = start(servers, "--auth", TOKEN)
    token_file = write(tmp_path, "token", TOKEN + "\n")
    await runs_a_call(server, gateway, {"nats_token_file": token_file}, token=TOKEN)


async def test_a_user_and_password_from_files_connect(
    servers: list[NatsServer], gateway: FakeGateway, tmp_path: Path
) -> None:
    server = start(servers, "--user", "ferry", "--pass", PASSWORD)
    env = {
        "nats_user_file": write(tmp_path, "user", "ferry\n"),
        "nats_password_file": write(tmp_path, "password", PASSWORD + "\n"),
    }
    await runs_a_call(server, gateway, env, user="ferry", password=PASSWORD)


async def test_user_information_in_the_url_still_works_and_is_never_logged(
    servers: list[NatsServer], gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    server = start(servers, "--user", "ferry", "--pass", PASSWORD)
    url = f"nats://ferry:{PASSWORD}@127.0.0.1:{server.port}"
    with caplog.at_level(logging.INFO):
        await runs_a_call(server, gateway, {"nats_url": url}, user="ferry", password=PASSWORD)
    assert f"connected to NATS server nats://***@127.0.0.1:{server.port}" in caplog.text
    assert PASSWORD not in caplog.text


async def test_an_nkey_seed_from_a_file_connects(
    servers: list[NatsServer], gateway: FakeGateway, tmp_path: Path
) -> None:
    key = user_nkey()
    config = write(
        tmp_path, "nkey.conf", f'authorization {{ users = [ {{ nkey: "{key.public}" }} ] }}\n'
    )
    server = start(servers, "-c", config)
    seed_file = write(tmp_path, "seed", key.seed + "\n")
    await runs_a_call(server, gateway, {"nats_nkey_seed_file": seed_file}, nkeys_seed_str=key.seed)


async def test_a_creds_file_connects_to_a_server_in_operator_mode(
    servers: list[NatsServer], gateway: FakeGateway, tmp_path: Path
) -> None:
    auth = Decentralized.make()
    server = start(servers, "-c", write(tmp_path, "operator.conf", auth.server_config))
    creds = write(tmp_path, "user.creds", auth.creds)
    await runs_a_call(server, gateway, {"nats_credentials_file": creds}, user_credentials=creds)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_files(ca: trustme.CA, folder: Path) -> dict[str, str]:
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("ferry-client")
    files = {
        "ca": folder / "ca.pem",
        "server_cert": folder / "server.pem",
        "server_key": folder / "server.key",
        "client_cert": folder / "client.pem",
        "client_key": folder / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(files["server_cert"]))
    server_cert.private_key_pem.write_to_path(str(files["server_key"]))
    client_cert.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client_cert.private_key_pem.write_to_path(str(files["client_key"]))
    return {name: str(path) for name, path in files.items()}


async def test_tls_with_a_private_ca_connects(
    servers: list[NatsServer], gateway: FakeGateway, tmp_path: Path, ca: trustme.CA
) -> None:
    files = tls_files(ca, tmp_path)
    server = start(
        servers,
        "--tls",
        "--tlscert",
        files["server_cert"],
        "--tlskey",
        files["server_key"],
        scheme="tls",
    )
    env = {"nats_url": server.url, "nats_tls_ca_file": files["ca"]}
    context = ssl.create_default_context(cafile=files["ca"])  # the test's client trusts it too
    await runs_a_call(server, gateway, env, tls=context)


async def test_tls_with_a_client_certificate_connects_to_a_server_that_verifies_clients(
    servers: list[NatsServer], gateway: FakeGateway, tmp_path: Path, ca: trustme.CA
) -> None:
    files = tls_files(ca, tmp_path)
    server = start(
        servers,
        "--tlsverify",
        "--tlscert",
        files["server_cert"],
        "--tlskey",
        files["server_key"],
        "--tlscacert",
        files["ca"],
        scheme="tls",
    )
    context = ssl.create_default_context(cafile=files["ca"])
    context.load_cert_chain(files["client_cert"], files["client_key"])
    env = {
        "nats_url": server.url,
        "nats_tls_ca_file": files["ca"],
        "nats_tls_cert_file": files["client_cert"],
        "nats_tls_key_file": files["client_key"],
    }
    await runs_a_call(server, gateway, env, tls=context)
    # without the client certificate the server refuses: one line, exit 2
    code, output = await run_to_exit(
        "queue-worker",
        {"nats_url": server.url, "nats_tls_ca_file": files["ca"], "nats_connect_timeout": "2s"},
    )
    assert code == 2, output
    assert len(output.splitlines()) == 1, output
    assert "cannot connect to NATS" in output


# -- wrong or missing secrets: exit 2, one line, never the secret ---------------------------


async def test_a_wrong_token_exits_2_in_one_line_without_the_token(
    servers: list[NatsServer], tmp_path: Path
) -> None:
    server = start(servers, "--auth", TOKEN)
    wrong = "not-the-right-token-4711"
    env = {"nats_url": server.url, "nats_token_file": write(tmp_path, "token", wrong + "\n")}
    for command in ("queue-worker", "cron-connector"):
        code, output = await run_to_exit(command, {**env, "gateway_url": "http://127.0.0.1:9"})
        assert code == 2, output
        assert output.splitlines() == [
            "ferry: nats_token_file: NATS refused the credentials (authorization violation)"
        ], output
        assert wrong not in output and TOKEN not in output


async def test_a_wrong_password_in_a_file_or_a_url_exits_2_and_is_never_printed(
    servers: list[NatsServer], tmp_path: Path
) -> None:
    server = start(servers, "--user", "ferry", "--pass", PASSWORD)
    wrong = "wrong-pa55word-0815"
    from_files = {
        "nats_url": server.url,
        "nats_user_file": write(tmp_path, "user", "ferry"),
        "nats_password_file": write(tmp_path, "password", wrong),
    }
    in_url = {"nats_url": f"nats://ferry:{wrong}@127.0.0.1:{server.port}"}
    for env in (from_files, in_url):
        code, output = await run_to_exit("queue-worker", env)
        assert code == 2, output
        assert len(output.splitlines()) == 1, output
        assert "authorization violation" in output
        assert wrong not in output


@pytest.mark.parametrize(
    "variable",
    [
        "nats_token_file",
        "nats_password_file",
        "nats_nkey_seed_file",
        "nats_credentials_file",
        "nats_tls_ca_file",
        "nats_tls_cert_file",
    ],
)
async def test_a_missing_secret_or_tls_file_exits_2_naming_the_variable(
    variable: str, tmp_path: Path
) -> None:
    env = {variable: str(tmp_path / "missing"), "nats_url": "nats://127.0.0.1:9"}
    if variable == "nats_password_file":
        env["nats_user_file"] = write(tmp_path, "user", "ferry")
    if variable == "nats_tls_cert_file":
        env["nats_tls_key_file"] = write(tmp_path, "key", "x")
    functions = write(tmp_path, "functions.yml", "functions: []")
    for command, extra in (
        ("queue-worker", {}),
        ("gateway", {"functions_file": functions}),
        ("cron-connector", {}),
    ):
        code, output = await run_to_exit(command, {**env, **extra})
        assert code == 2, (command, output)
        assert output.startswith(f"ferry: {variable}="), (command, output)
        assert "No such file or directory" in output
        assert len(output.splitlines()) == 1, (command, output)
    code, output = await publish(env)
    assert code == 2 and output.startswith(f"ferry: {variable}="), output


async def test_a_seed_file_that_holds_no_seed_exits_2_without_printing_it(tmp_path: Path) -> None:
    garbage = "SUNOTASEEDATALLBUTSECRET"
    env = {
        "nats_url": "nats://127.0.0.1:9",
        "nats_nkey_seed_file": write(tmp_path, "seed", garbage),
    }
    code, output = await run_to_exit("queue-worker", env)
    assert code == 2
    assert output.splitlines() == [
        f"ferry: nats_nkey_seed_file={env['nats_nkey_seed_file']!r}: not an NKey seed"
    ]
    assert garbage not in output


async def publish(env: dict[str, str]) -> tuple[int, str]:
    """`ferry publish echo` with `env`: its exit status and everything it printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry",
        "publish",
        "echo",
        env=test_environ(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode().strip()

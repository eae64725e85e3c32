"""faas-cli against a standalone `ferry gateway`: the statuses and JSON shapes faas-cli relies on.

Checked against faas-cli's sources (`commands/login.go` validateLogin, `proxy/list.go`,
`commands/version.go` with the gateway's `GatewayInfo`, go-sdk's `GetNamespace`) and
faas-provider's `FunctionStatus` and `FunctionNamespace` (see docs/gateway.md, "Using faas-cli
with ferry"). Each test names the faas-cli command whose view it checks.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.core.version import VERSION
from gateway.service import GatewayService
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.queue import QueueUnderTest
from tests.support.wire import exchange, request

ADMIN = "Basic " + base64.b64encode(b"admin:s3cret").decode()


@pytest.fixture
async def front_door(
    tmp_path: Path, queue: QueueUnderTest, gateway: FakeGateway
) -> AsyncIterator[GatewayService]:
    gateway.function("echo")
    gateway.function("report")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "basic-auth-user").write_text("admin")
    (secrets / "basic-auth-password").write_text("s3cret")
    functions = {
        "echo": {"url": f"{gateway.url}/function/echo", "image": "ghcr.io/example/echo:1.2"},
        "report": {"url": f"{gateway.url}/function/report", "namespace": "finance"},
    }
    path = write_functions(tmp_path / "f.yml", functions)
    env = gateway_env(
        queue, functions_file=str(path), basic_auth="true", secret_mount_path=str(secrets)
    )
    async with running_gateway(env) as service:
        yield service


async def call(
    method: str, url: str, *, auth: str | None = ADMIN, data: bytes = b""
) -> tuple[int, bytes]:
    headers = {"Authorization": auth} if auth else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, data=data) as response,
    ):
        return response.status, await response.read()


async def json_of(url: str) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Authorization": ADMIN}) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def test_login_fails_on_a_wrong_password_and_list_without_login_is_unauthorized(
    front_door: GatewayService,
) -> None:
    """faas-cli validates a login with `GET /system/functions` and its basic auth: 200 saves the
    credentials, 401 is "unable to login"; `list` says "unauthorized access" on 401."""
    url = f"{front_door.url}/system/functions"
    wrong = "Basic " + base64.b64encode(b"admin:wrong").decode()
    assert (await call("GET", url, auth=wrong))[0] == 401
    assert (await call("GET", url, auth=None))[0] == 401
    assert (await call("GET", url))[0] == 200


async def test_version_reads_gateway_info_in_the_openfaas_gateways_shape(
    front_door: GatewayService,
) -> None:
    """`faas-cli version` prints `version.release`/`sha` and `provider.provider`,
    `.orchestration`, `.version.release`/`sha`, dereferencing both objects unchecked."""
    info = await json_of(f"{front_door.url}/system/info")
    assert info["version"] == {"release": VERSION, "sha": ""}
    provider = info["provider"]
    assert provider["provider"] == "ferry"
    assert provider["orchestration"] == "standalone"
    assert provider["version"] == {"release": VERSION, "sha": ""}
    assert isinstance(info["arch"], str) and info["arch"]


@pytest.mark.parametrize(
    ("method", "path", "instead"),
    [
        ("POST", "/system/functions", "functions file"),  # deploy
        ("PUT", "/system/functions", "functions file"),  # deploy --update
        ("DELETE", "/system/functions", "functions file"),  # remove
        ("POST", "/system/scale-function/echo", "functions file"),  # scale
        ("GET", "/system/logs?name=echo", "where the service"),  # logs
        ("GET", "/system/secrets", "secrets go to the OpenFaaS gateway"),  # secret list
        ("POST", "/system/secrets", "secrets go to the OpenFaaS gateway"),  # secret create
        ("PUT", "/system/secrets", "secrets go to the OpenFaaS gateway"),  # secret update
        ("DELETE", "/system/secrets", "secrets go to the OpenFaaS gateway"),  # secret remove
        ("POST", "/system/namespace/", "'namespace:' in the functions file"),  # namespace create
        ("PUT", "/system/namespace/finance", "'namespace:' in the functions file"),
        ("DELETE", "/system/namespace/finance", "'namespace:' in the functions file"),
    ],
)
async def test_management_commands_ferry_cannot_serve_answer_501_saying_what_to_do_instead(
    front_door: GatewayService, method: str, path: str, instead: str
) -> None:
    status, body = await call(method, front_door.url + path, data=b"{}")
    assert status == 501
    assert instead in body.decode()


async def test_namespace_get_finds_every_namespace_namespace_list_shows(
    front_door: GatewayService,
) -> None:
    listed = await json_of(f"{front_door.url}/system/namespaces")
    assert listed == ["finance", "openfaas-fn"]
    for name in listed:  # go-sdk's GetNamespace reads faas-provider's FunctionNamespace
        detail = await json_of(f"{front_door.url}/system/namespace/{name}")
        assert detail == {"name": name, "annotations": {}, "labels": {}}
    status, _ = await call("GET", f"{front_door.url}/system/namespace/nowhere")
    assert status == 404


async def test_list_and_describe_show_the_image_the_invocations_and_when_it_was_listed(
    front_door: GatewayService,
) -> None:
    """`faas-cli list -v` and `describe` show `image` and `invocationCount` (describe takes
    the count from the list); `createdAt` must parse as Go's time.Time (RFC 3339)."""
    port = int(front_door.url.rsplit(":", 1)[1])
    lean = request("POST", "/function/echo", body=b"x")
    assert (await exchange(port, lean))[0] == 200  # served by the lean listener
    escaped = request("GET", "/function/echo/%7Esub")  # percent-escapes: served by aiohttp
    assert (await exchange(port, escaped))[0] == 200
    assert (await call("POST", f"{front_door.url}/function/report.finance"))[0] == 200
    (echo,) = await json_of(f"{front_door.url}/system/functions")
    described = await json_of(f"{front_door.url}/system/function/echo")
    assert described == echo
    assert (echo["name"], echo["image"], echo["invocationCount"]) == (
        "echo",
        "ghcr.io/example/echo:1.2",
        2,
    )
    assert (echo["replicas"], echo["availableReplicas"]) == (1, 1)  # describe: "Ready"
    assert datetime.fromisoformat(echo["createdAt"]).tzinfo is not None
    (report,) = await json_of(f"{front_door.url}/system/functions?namespace=finance")
    assert (report["image"], report["invocationCount"]) == ("", 1)

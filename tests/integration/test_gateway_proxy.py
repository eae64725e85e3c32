"""Everything but /async-function reaches the upstream (or standalone function) unchanged."""

from __future__ import annotations

import gzip
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import Call, FakeGateway
from tests.support.queue import QueueUnderTest
from tests.support.streams import stored_messages

BIG = bytes(range(256)) * 20_000  # 5 MB, above any buffer


async def answer_201(call: Call) -> web.Response:
    return web.Response(
        status=201,
        body=b"echo:" + call.body,
        headers={"X-Fn-Header": "fn", "Content-Type": "text/x-echo", "Set-Cookie": "a=1"},
    )


async def answer_big(call: Call) -> web.Response:
    return web.Response(body=BIG, headers={"Content-Type": "application/octet-stream"})


async def answer_gzipped(call: Call) -> web.Response:
    return web.Response(
        body=gzip.compress(b"zipped"),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
    )


async def test_sync_function_call_passes_through_with_status_headers_and_body(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("echo", answer_201)
    async with (
        running_gateway(gateway_env(queue, upstream_url=gateway.url)) as gw,
        aiohttp.ClientSession() as session,
        session.post(
            f"{gw.url}/function/echo/sub/path?a=1&b=two%20words",
            data=b"payload",
            headers={"X-Custom": "c", "Authorization": "Basic dTpw"},
        ) as response,
    ):
        assert response.status == 201
        assert await response.read() == b"echo:payload"
        assert response.headers["X-Fn-Header"] == "fn"
        assert response.headers["Content-Type"] == "text/x-echo"
        assert response.headers["Set-Cookie"] == "a=1"
    (call,) = gateway.calls_to("echo")
    assert (call.method, call.path, call.query) == ("POST", "/sub/path", "a=1&b=two%20words")
    assert call.body == b"payload"
    assert call.headers["X-Custom"] == "c"
    assert call.headers["Authorization"] == "Basic dTpw"


async def test_system_functions_passes_through_unchanged(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.functions = [
        {"name": "echo", "namespace": "openfaas-fn", "replicas": 3, "annotations": {"k": "v"}}
    ]
    async with running_gateway(gateway_env(queue, upstream_url=gateway.url)) as gw:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{gw.url}/system/functions") as via_ferry,
            session.get(f"{gateway.url}/system/functions") as direct,
        ):
            assert via_ferry.status == direct.status == 200
            assert await via_ferry.read() == await direct.read()
            assert via_ferry.headers["Content-Type"] == direct.headers["Content-Type"]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{gw.url}/no/such/route") as missing,
        ):
            assert missing.status == 404


async def test_large_and_compressed_bodies_are_streamed_back_unchanged(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("big", answer_big)
    gateway.function("zip", answer_gzipped)
    async with (
        running_gateway(gateway_env(queue, upstream_url=gateway.url)) as gw,
        aiohttp.ClientSession(auto_decompress=False) as session,
    ):
        async with session.put(f"{gw.url}/function/big", data=BIG) as response:
            assert await response.read() == BIG
        async with session.get(f"{gw.url}/function/zip") as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await response.read()) == b"zipped"
    assert gateway.calls_to("big")[0].body == BIG


async def test_proxy_mode_queues_functions_the_upstream_lists_and_404s_the_rest(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.functions = [
        {"name": "echo", "namespace": "openfaas-fn", "annotations": {"com.openfaas.queue": "q1"}}
    ]
    async with (
        running_gateway(gateway_env(queue, upstream_url=gateway.url)) as gw,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(f"{gw.url}/async-function/echo.openfaas-fn") as response:
            assert response.status == 202
        async with session.post(f"{gw.url}/async-function/other") as response:
            assert response.status == 404
        (stored,) = await stored_messages(queue.js, queue.stream)
    assert stored.subject == f"{queue.stream}.q1"


async def test_standalone_mode_serves_the_openfaas_system_api_and_proxies_functions(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    gateway.function("echo", answer_201)
    functions = write_functions(
        tmp_path / "functions.yml",
        {
            "echo": {"url": f"{gateway.url}/function/echo", "labels": {"team": "a"}},
            "other": {"url": f"{gateway.url}/function/other", "namespace": "team-b"},
        },
    )
    async with (
        running_gateway(gateway_env(queue, functions_file=str(functions))) as gw,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(f"{gw.url}/system/namespaces") as response:
            assert await response.json() == ["openfaas-fn", "team-b"]
        async with session.get(f"{gw.url}/system/functions") as response:
            (echo,) = await response.json()
        async with session.get(f"{gw.url}/system/functions?namespace=team-b") as response:
            (other,) = await response.json()
        async with session.post(f"{gw.url}/function/echo/x%20y?q=1", data=b"hi") as response:
            assert response.status == 201
            assert await response.read() == b"echo:hi"
            assert response.headers["X-Fn-Header"] == "fn"
        async with session.post(f"{gw.url}/function/missing") as response:
            assert response.status == 404
    assert (echo["name"], echo["namespace"], echo["labels"]) == (
        "echo",
        "openfaas-fn",
        {"team": "a"},
    )
    assert (other["name"], other["namespace"]) == ("other", "team-b")
    assert {"replicas", "availableReplicas", "annotations", "image"} <= set(echo)
    (call,) = gateway.calls_to("echo")
    assert (call.path, call.query, call.body) == ("/x y", "q=1", b"hi")


async def test_a_compressed_request_body_reaches_the_function_as_sent(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    """The function (an aiohttp server, which decodes by Content-Encoding) reads the original
    text only if the gzip bytes and their header were passed on together."""
    gateway.function("echo")
    async with (
        running_gateway(gateway_env(queue, upstream_url=gateway.url)) as gw,
        aiohttp.ClientSession() as session,
        session.post(
            f"{gw.url}/function/echo",
            data=gzip.compress(b"compressed by the caller"),
            headers={"Content-Encoding": "gzip"},
        ) as response,
    ):
        assert response.status == 200
    (call,) = gateway.calls_to("echo")
    assert call.headers["Content-Encoding"] == "gzip"
    assert call.body == b"compressed by the caller"

"""The http1 client making requests: what it sends, its limit and deadlines, where it
connects (resolver, TLS), and what it refuses to send.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from connectors.core.http1 import Http1Client, HttpError, InvalidRequest
from tests.support.http1 import OK, RawServer, Reply, self_signed, serve
from tests.support.ports import eventually


async def test_a_post_reaches_an_aiohttp_server_with_its_headers_and_body(
    client: Http1Client,
) -> None:
    seen: list[tuple[str, str, str, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            (request.method, request.path_qs, request.headers["X-One"], await request.read())
        )
        return web.Response(body=b"answer", status=201, headers={"X-Back": "yes"})

    runner, base = await serve(handler)
    try:
        response = await client.request(
            "POST", f"{base}/function/f?a=1", headers=[("X-One", "1")], body=b"payload"
        )
    finally:
        await runner.cleanup()
    assert seen == [("POST", "/function/f?a=1", "1", b"payload")]
    assert (response.status, response.body, response.headers["X-Back"]) == (201, b"answer", "yes")


async def test_a_slow_answer_times_out_and_the_connection_is_not_reused(
    client: Http1Client,
) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await release.wait()
        return web.Response(text="done")

    runner, base = await serve(handler)
    try:
        with pytest.raises(TimeoutError):
            await client.request("GET", f"{base}/slow", timeout=0.2)
        release.set()
        assert (await client.request("GET", f"{base}/fast", timeout=5)).body == b"done"
    finally:
        await runner.cleanup()


async def test_no_more_than_limit_requests_run_at_once() -> None:
    running = peak = 0
    gate = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1
        return web.Response(text="ok")

    runner, base = await serve(handler)
    http = Http1Client(limit=3)
    try:
        calls = [asyncio.create_task(http.request("GET", f"{base}/x")) for _ in range(10)]
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert running == 3
        gate.set()
        assert all(r.status == 200 for r in await asyncio.gather(*calls))
    finally:
        await http.close()
        await runner.cleanup()
    assert peak == 3


async def test_a_deadline_spent_waiting_for_a_slot_is_an_error_saying_nothing_was_sent() -> None:
    """Not a TimeoutError: the invoker re-invokes after this, never after a real timeout."""
    gate = asyncio.Event()
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        await gate.wait()
        return web.Response(text="ok")

    runner, base = await serve(handler)
    http = Http1Client(limit=1)
    try:
        first = asyncio.create_task(http.request("GET", f"{base}/first"))
        await eventually(lambda: seen == ["/first"], what="the first request in flight")
        with pytest.raises(HttpError, match="nothing sent"):
            await http.request("GET", f"{base}/second", timeout=0.1)
        gate.set()
        assert (await first).status == 200
        assert seen == ["/first"]
        assert (await http.request("GET", f"{base}/x", timeout=5)).status == 200
    finally:
        await http.close()
        await runner.cleanup()


@pytest.mark.parametrize(
    ("headers", "url", "error"),
    [
        ([("X-A", "1\r\nHost: evil")], "http://127.0.0.1:1/x", "CR, LF or NUL"),
        ([("Bad Name", "1")], "http://127.0.0.1:1/x", "not a valid token"),
        ([], "ftp://127.0.0.1/x", "not an absolute http"),
        ([], "http://127.0.0.1:99999/x", "malformed URL"),
    ],
)
async def test_a_request_that_would_break_framing_is_refused_before_sending(
    client: Http1Client, headers: list[tuple[str, str]], url: str, error: str
) -> None:
    with pytest.raises(InvalidRequest, match=error):
        await client.request("GET", url, headers=headers)


async def test_nothing_listening_is_an_http_error_naming_the_target(client: Http1Client) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(HttpError, match=f"cannot connect to 127.0.0.1:{port}"):
        await client.request("GET", f"http://127.0.0.1:{port}/x")


async def test_the_resolver_decides_which_addresses_are_dialled(
    raw: Callable[[Reply], RawServer],
) -> None:
    server = raw(lambda _: OK)
    await server.start()
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.1"]

    async def refuse(host: str, port: int) -> list[str]:
        raise OSError(f"{host} resolves only to refused addresses")

    http = Http1Client(limit=2, resolver=resolve)
    guarded = Http1Client(limit=2, resolver=refuse)
    try:
        response = await http.request("GET", f"http://receiver.test:{server.port}/cb")
        with pytest.raises(HttpError, match="refused addresses"):
            await guarded.request("GET", f"http://receiver.test:{server.port}/cb")
    finally:
        await http.close()
        await guarded.close()
    assert response.body == b"ok"
    assert asked == [("receiver.test", server.port)]
    assert b"Host: receiver.test:" in server.requests[0]


async def test_https_is_verified_against_the_trusted_certificates(tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"secret:" + await request.read())

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls).start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/function/f"
    trusting = Http1Client(limit=2, ssl_context=ssl.create_default_context(cafile=cert_file))
    default = Http1Client(limit=2)
    try:
        first = await trusting.request("POST", url, body=b"a")
        second = await trusting.request("POST", url, body=b"b")
        with pytest.raises(HttpError, match=r"cannot connect.*(certificate|CERTIFICATE)"):
            await default.request("POST", url, body=b"c")
    finally:
        await trusting.close()
        await default.close()
        await runner.cleanup()
    assert (first.body, second.body) == (b"secret:a", b"secret:b")


async def test_what_may_not_appear_raw_in_the_request_line_is_percent_encoded(
    client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    server = raw(lambda _: OK)
    await server.start()
    await client.request("GET", server.url("/function/echo/café?q=a b&kept=%20#frag"))
    request_line = server.requests[0].split(b"\r\n", 1)[0]
    assert request_line == b"GET /function/echo/caf%C3%A9?q=a%20b&kept=%20 HTTP/1.1"


async def test_a_method_that_is_not_a_token_is_refused_before_sending(client: Http1Client) -> None:
    with pytest.raises(InvalidRequest, match="method"):
        await client.request(
            "GET /other HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET", "http://127.0.0.1:1/x"
        )

"""The lean HTTP/1.1 client, against real servers on loopback.

An aiohttp server stands for well-behaved functions and receivers; a raw asyncio server that
writes exactly the bytes a test gives it stands for the odd and the broken ones.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from connectors.core.http1 import Http1Client, HttpError, InvalidRequest

Reply = Callable[[bytes], bytes | None]  # request bytes -> answer bytes (None: close)


@dataclass
class RawServer:
    """Answers each request (head and Content-Length body) with what `reply` returns."""

    reply: Reply
    close_after_reply: bool = False
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def url(self, path: str = "/x") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.reply(request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after_reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Reply], RawServer]]:
    servers: list[RawServer] = []

    def make(reply: Reply) -> RawServer:
        server = RawServer(reply)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[Http1Client]:
    http = Http1Client(limit=8)
    yield http
    await http.close()


async def serve(handler: Callable[[web.Request], object]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


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


async def test_chunked_and_streamed_answers_are_read_whole(client: Http1Client) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one,", b"two,", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    runner, base = await serve(handler)
    try:
        first = await client.request("GET", f"{base}/stream")
        second = await client.request("GET", f"{base}/stream")
    finally:
        await runner.cleanup()
    assert first.body == second.body == b"one,two,three"


async def test_keep_alive_reuses_one_connection(
    client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    server = raw(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await server.start()
    for _ in range(5):
        assert (await client.request("POST", server.url(), body=b"x")).body == b"ok"
    assert server.connections == 1
    assert len(server.requests) == 5


async def test_connection_close_and_http_1_0_are_not_reused(
    client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc",
        ]
    )
    server = raw(lambda _: next(answers))
    await server.start()
    bodies = [(await client.request("GET", server.url())).body for _ in range(3)]
    assert bodies == [b"a", b"b", b"c"]
    assert server.connections == 3


async def test_a_body_framed_by_the_close_is_read_to_the_end(
    client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    server = raw(lambda _: b"HTTP/1.1 200 OK\r\n\r\nall of it")
    server.close_after_reply = True
    await server.start()
    response = await client.request("GET", server.url())
    assert response.body == b"all of it"


async def test_interim_answers_are_skipped_and_head_has_no_body(
    client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    def reply(request: bytes) -> bytes:
        if request.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
        return (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 204 No Content\r\n\r\n"
        )

    server = raw(reply)
    await server.start()
    head = await client.request("HEAD", server.url())
    empty = await client.request("POST", server.url(), body=b"x")
    assert (head.status, head.body) == (200, b"")
    assert (empty.status, empty.body) == (204, b"")
    assert server.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    """The server answers, then drops the idle connection: the next call still succeeds once."""
    server = raw(lambda _: None if len(server.requests) == 2 else OK)
    await server.start()
    first = await client.request("POST", server.url(), body=b"1")
    second = await client.request("POST", server.url(), body=b"2")
    assert first.body == second.body == b"ok"
    # The second call was written to the dropped connection, then once more to a new one.
    assert [r.endswith(b"2") for r in server.requests] == [False, True, True]


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"HTTP/1.1 2x0 Bad\r\n\r\n", "malformed status line"),
        (b"SPDY/3 200 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nBad Header: 1\r\nContent-Length: 0\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 0\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 2\xb20 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "CRLF"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed mid-answer"),
    ],
)
async def test_broken_answers_are_errors_not_guesses(
    client: Http1Client, raw: Callable[[Reply], RawServer], answer: bytes, error: str
) -> None:
    server = raw(lambda _: answer)
    server.close_after_reply = True
    await server.start()
    with pytest.raises(HttpError, match=error):
        await client.request("GET", server.url())


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


async def test_waiting_for_a_free_slot_counts_against_the_timeout() -> None:
    gate = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await gate.wait()
        return web.Response(text="ok")

    runner, base = await serve(handler)
    http = Http1Client(limit=1)
    try:
        first = asyncio.create_task(http.request("GET", f"{base}/x"))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            await http.request("GET", f"{base}/x", timeout=0.1)
        gate.set()
        assert (await first).status == 200
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


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here (cryptography comes with moto)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ferry test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


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

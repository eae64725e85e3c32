"""The queue worker invokes functions as the Go gateway queued them and sends callbacks."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

from aiohttp import web

from tests.support.compat import COMPAT
from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest

CALLBACK_HEADERS = (
    "X-Call-Id",
    "X-Function-Name",
    "X-Function-Status",
    "X-Duration-Seconds",
    "X-Start-Time",
    "X-Retry",
    "X-Retry-Max",
)


def go_message(callback_url: str, *, string_callback: bool) -> bytes:
    """A message exactly as the Go gateway writes it, pointed at our callback receiver."""
    raw = json.loads((COMPAT / "queue-request-full.json").read_text())
    raw["Function"] = "echo"
    if string_callback:
        raw["CallbackUrl"] = callback_url
    else:
        host_port = callback_url.split("//", 1)[1].split("/", 1)[0]
        raw["CallbackUrl"].update(Host=host_port, Path="/callback/result")
    return json.dumps(raw).encode()


async def reply_with_headers(call: Call) -> web.Response:
    return web.Response(
        status=201,
        body=b"done:" + call.body,
        headers={"X-Fn-Header": "fn", "Content-Type": "text/x"},
    )


async def check_go_message_roundtrip(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver, string_callback: bool
) -> None:
    gateway.function("echo", reply_with_headers)
    await queue.publish_raw(
        go_message(receiver.url("/callback/result"), string_callback=string_callback)
    )
    async with queue.worker():
        (callback,) = await receiver.wait_for(1)

    (call,) = gateway.calls_to("echo")
    assert call.method == "POST"
    assert call.path == "/sub/path"
    assert call.query == "a=1&b=two%20words"
    assert call.body == b'{"order":42,"note":"h\xc3\xa9llo"}\n'
    assert call.headers.getall("X-Multi") == ["one", "two"]
    assert call.headers["X-Call-Id"] == "5c1c4ee9-7a1b-4d3e-9d8e-2f4f0c0b7d11"
    assert call.headers["X-Start-Time"] == "1764031000123456789"
    assert call.headers["User-Agent"].startswith("ferry/")
    assert call.headers["Content-Type"] == "application/json"

    assert callback.path.startswith("/callback/result")
    assert callback.body == b"done:" + call.body
    for name in CALLBACK_HEADERS:
        assert name in callback.headers, name
    assert callback.headers["X-Call-Id"] == "5c1c4ee9-7a1b-4d3e-9d8e-2f4f0c0b7d11"
    assert callback.headers["X-Function-Name"] == "echo"
    assert callback.headers["X-Function-Status"] == "201"
    assert callback.headers["X-Start-Time"] == "1764031000123456789"
    assert callback.headers["X-Retry"] == "0"
    assert callback.headers["X-Retry-Max"] == "5"
    assert callback.headers["X-Fn-Header"] == "fn"
    assert callback.headers["Content-Type"] == "text/x"
    seconds = callback.headers["X-Duration-Seconds"]
    assert float(seconds) >= 0 and len(seconds.split(".")[1]) == 6
    assert await queue.pending() == 0


async def test_go_gateway_message_with_url_object_is_invoked_and_called_back(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    await check_go_message_roundtrip(queue, gateway, receiver, string_callback=False)


async def test_message_with_string_callback_url_is_invoked_and_called_back(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    await check_go_message_roundtrip(queue, gateway, receiver, string_callback=True)


async def test_binary_body_reaches_the_function_unchanged(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("bin")
    raw = json.loads((COMPAT / "queue-request-binary-body.json").read_text())
    raw["CallbackUrl"] = None
    raw["QueueName"] = ""
    await queue.publish_raw(json.dumps(raw).encode())
    async with queue.worker():
        from tests.support.ports import eventually

        await eventually(lambda: gateway.calls_to("bin"))
    (call,) = gateway.calls_to("bin")
    assert call.method == "PUT"
    assert call.body == base64.b64decode("AAEC/v8=")


async def test_with_basic_auth_a_function_gets_the_callers_authorization_never_the_admins(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    (tmp_path / "basic-auth-user").write_text("admin\n")
    (tmp_path / "basic-auth-password").write_text("s3cret\n")
    gateway.function("echo")
    gateway.function("anonymous")
    await queue.publish(
        "echo", b"x", headers=[("Authorization", "Bearer caller"), ("User-Agent", "caller/1")]
    )
    await queue.publish("anonymous", b"y")
    async with queue.worker(basic_auth="true", secret_mount_path=str(tmp_path)):
        await eventually(
            lambda: bool(gateway.calls_to("echo")) and bool(gateway.calls_to("anonymous")),
            what="both invoked",
        )
    (call,) = gateway.calls_to("echo")
    assert call.headers.getall("Authorization") == ["Bearer caller"]
    assert call.headers.getall("User-Agent") == [call.headers["User-Agent"]]
    assert call.headers["User-Agent"].startswith("ferry/")
    (bare,) = gateway.calls_to("anonymous")
    assert "Authorization" not in bare.headers


async def test_without_basic_auth_the_callers_authorization_is_passed_on(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("echo")
    await queue.publish("echo", b"x", headers=[("Authorization", "Bearer caller")])
    async with queue.worker():
        await eventually(lambda: bool(gateway.calls_to("echo")), what="invoked")
    (call,) = gateway.calls_to("echo")
    assert call.headers.getall("Authorization") == ["Bearer caller"]


async def test_a_compressed_answer_reaches_the_callback_with_its_encoding(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    packed = gzip.compress(b"the result, compressed by the function")

    async def gzipped(call: Call) -> web.Response:
        return web.Response(body=packed, headers={"Content-Encoding": "gzip"})

    gateway.function("zip", gzipped)
    await queue.publish("zip", b"x", callback_url=receiver.url())
    async with queue.worker():
        (callback,) = await receiver.wait_for(1)
    # The receiver is an aiohttp server, which decodes a request body by its Content-Encoding:
    # it reads the original text only if the gzip bytes and their header arrived together.
    assert callback.headers["Content-Encoding"] == "gzip"
    assert callback.body == b"the result, compressed by the function"


async def test_a_non_ascii_path_reaches_the_function_percent_encoded(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    """The queued Path is decoded text (as Go's r.URL.Path): it is sent as UTF-8 escapes."""
    gateway.function("echo")
    await queue.publish("echo", b"x", path="/café/a b", query_string="q=%C3%A9&r=two words")
    async with queue.worker():
        await eventually(lambda: bool(gateway.calls_to("echo")), what="invoked")
    (call,) = gateway.calls_to("echo")
    assert call.path == "/café/a b"
    assert call.query == "q=%C3%A9&r=two%20words"

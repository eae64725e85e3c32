"""`ferry publish` stores the same QueueRequest as the front door and prints its call id."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncq import codec
from tests.support.cli import ferry
from tests.support.queue import QueueUnderTest
from tests.support.streams import stored_messages


def env(queue: QueueUnderTest) -> dict[str, str]:
    return {
        "nats_url": queue.nats_url,
        "nats_stream": queue.stream,
        "dead_letter_stream": queue.dead_stream,
    }


async def test_publish_stores_the_call_and_prints_its_id(
    queue: QueueUnderTest, tmp_path: Path
) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b'{"n": 1}')
    result = await ferry(
        "publish",
        "echo.openfaas-fn",
        "--data",
        f"@{body}",
        "--callback",
        "http://127.0.0.1:9/cb",
        "--header",
        "content-type: application/json",
        "-H",
        "X-Multi:one",
        "-H",
        "X-Multi:two",
        "--queue",
        "slow",
        env=env(queue),
    )
    assert result.status == 0, result.stderr
    call_id = result.stdout.strip()
    (stored,) = await stored_messages(queue.js, queue.stream)
    request = codec.decode(stored.data)
    assert stored.subject == f"{queue.stream}.slow"
    assert stored.headers["Nats-Msg-Id"] == call_id == request.call_id
    assert request.function == "echo.openfaas-fn"
    assert request.body == b'{"n": 1}'
    assert request.queue_name == "slow"
    assert request.callback == "http://127.0.0.1:9/cb"
    assert request.header["Content-Type"] == ["application/json"]
    assert request.header["X-Multi"] == ["one", "two"]
    assert request.start_time.isdigit()


async def test_publish_reads_the_body_from_stdin_and_keeps_a_given_call_id(
    queue: QueueUnderTest,
) -> None:
    args = ("publish", "echo", "--data", "@-", "-H", "X-Call-Id: fixed-1")
    first = await ferry(*args, env=env(queue), stdin=b"from stdin")
    second = await ferry(*args, env=env(queue), stdin=b"from stdin")
    assert first.stdout.strip() == second.stdout.strip() == "fixed-1"
    (stored,) = await stored_messages(queue.js, queue.stream)
    assert codec.decode(stored.data).body == b"from stdin"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--header", "no-colon"), "--header"),
        (("--data", "@/nonexistent/file"), "--data"),
        (("--callback", "/relative"), "--callback"),
        (("--path", "/a/../b"), "--path"),
        (("--path", "/a/%2e%2e/b"), "--path"),
    ],
)
async def test_bad_input_is_one_line_and_exit_2(
    queue: QueueUnderTest, args: tuple[str, ...], needle: str
) -> None:
    result = await ferry("publish", "echo", *args, env=env(queue))
    assert result.status == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert needle in result.stderr
    assert await queue.stored() == 0


@pytest.mark.parametrize("name", ["Bad_Name", "a" * 5000, "fn\x1b[31m", "../x", ""])
async def test_a_name_no_function_can_have_is_one_line_and_exit_2(
    queue: QueueUnderTest, name: str
) -> None:
    result = await ferry("publish", name, env=env(queue))
    assert result.status == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "NAME" in result.stderr and "\x1b" not in result.stderr
    assert len(result.stderr) < 400
    assert await queue.stored() == 0


async def test_unreachable_nats_is_one_line_and_exit_2() -> None:
    result = await ferry(
        "publish", "echo", env={"nats_url": "nats://127.0.0.1:1", "nats_connect_timeout": "1s"}
    )
    assert result.status == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot connect to NATS" in result.stderr

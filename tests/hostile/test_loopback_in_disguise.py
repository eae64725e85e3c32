"""Finding 11: a callback host that is loopback in disguise is refused where it is first seen,
and a refusal by the resolver-time guard is final (not retried) and counted as refused."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.core.errors import CallbackRefused
from connectors.core.hosts import allowed_hosts, embedded_ipv4, host_address, inet_aton
from connectors.core.urlguard import CallbackPolicy
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import CallbackReceiver, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest
from tests.support.wire import exchange, request

# full-width dots and digits, enclosed digits: the resolver reads these as 127.0.0.1 (IDNA)
IN_OTHER_SCRIPTS = ["127。0。0。1", "①②⑦.0.0.1", "\uff11\uff12\uff17.0.0.1"]
# IPv6 addresses that reach 127.0.0.1 or the metadata address: IPv4-compatible, NAT64, 6to4,
# Teredo, local-use NAT64
CARRYING_IPV4 = [
    "::127.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",
    "64:ff9b:1::a9fe:a9fe",
]
DISGUISED = [
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7F.1/",
    "http://127.1/",
    "http://127.1 x/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://0/",
    "http://localhost/",
    "http://LOCALHOST./x",
    "http://api.localhost:8080/",
    "http://10.1/",
    "http://0xa9.0xfe.0xa9fe/",  # 169.254.169.254, the cloud metadata address
    *[f"http://{host}/" for host in IN_OTHER_SCRIPTS],
    *[f"http://[{host}]/" for host in CARRYING_IPV4],
]


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("1.2.65535", "1.2.255.255"),
        ("0xa9.0xfe.0xa9fe", "169.254.169.254"),
    ],
)
def test_numeric_hosts_are_read_as_the_resolver_reads_them(host: str, address: str) -> None:
    assert inet_aton(host) == ipaddress.IPv4Address(address)


_PART = st.one_of(
    st.integers(0, 2**32).map(str),
    st.integers(0, 2**32).map(lambda n: f"0{n:o}"),
    st.integers(0, 2**32).map(lambda n: f"0x{n:x}"),
    st.sampled_from(["0x", "08", "09", "0", "00", "0X1F", "1a", ""]),
)


@settings(max_examples=500)
@given(
    st.lists(_PART, min_size=1, max_size=5).map(".".join),
    st.sampled_from(["", " ", " x", "\t1", "\n", "x", " 1.2"]),
)
def test_numeric_hosts_agree_with_the_system_inet_aton(numeric: str, tail: str) -> None:
    host = numeric + tail
    try:
        expected = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        expected = None
    assert inet_aton(host) == expected


@pytest.mark.parametrize("host", IN_OTHER_SCRIPTS)
def test_a_host_in_other_scripts_is_read_as_the_resolver_reads_it(host: str) -> None:
    assert host_address(host) == ipaddress.IPv4Address("127.0.0.1")
    assert socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)[0][4][0] == "127.0.0.1"


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("::127.0.0.1", "127.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("2002:7f00:1::", "127.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),
        ("::1", None),
        ("2606:4700::1111", None),
    ],
)
def test_an_ipv6_address_carrying_an_ipv4_one_is_known_by_it(
    address: str, carried: str | None
) -> None:
    found = embedded_ipv4(ipaddress.IPv6Address(address))
    assert found == (ipaddress.IPv4Address(carried) if carried else None)


@pytest.mark.parametrize("host", CARRYING_IPV4)
def test_an_ipv6_address_carrying_loopback_is_refused_by_both_checks(host: str) -> None:
    policy = CallbackPolicy.build([], allow_private=False)
    with pytest.raises(CallbackRefused, match="private or loopback"):
        policy.check_url(f"http://[{host}]:8080/cb")
    assert not policy.address_allowed(ipaddress.IPv6Address(host))


def test_public_hosts_behind_nat64_and_6to4_are_still_allowed() -> None:
    policy = CallbackPolicy.build([], allow_private=False)
    for host in ("64:ff9b::808:808", "2002:808:808::", "2606:4700::1111"):
        assert policy.check_url(f"http://[{host}]/cb") == host


def test_a_host_idna_cannot_encode_is_refused_where_it_is_first_seen() -> None:
    with pytest.raises(CallbackRefused, match="not a valid name"):
        CallbackPolicy.build([], allow_private=True).check_url("http://\uff41" + "b" * 70 + ".com/")


@pytest.mark.parametrize(
    "host", ["example.com", "1.2.3.4.5", "08", "1.256.1.1", "1.2.65536", "1e3"]
)
def test_what_the_resolver_would_look_up_is_not_a_numeric_address(host: str) -> None:
    assert host_address(host) is None


@pytest.mark.parametrize(
    "host", ["1" * 5000, "0x" + "f" * 5000, "0" + "7" * 5000, "1.2.3." + "9" * 5000, "0" * 40 + "1"]
)
def test_a_numeric_host_of_any_length_is_read_as_the_system_reads_it(host: str) -> None:
    try:
        expected = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        expected = None
    assert inet_aton(host) == expected


def test_a_callback_to_a_numeric_host_of_thousands_of_digits_is_checked_without_an_error() -> None:
    url = "http://" + "1" * 5000 + "/cb"  # not an address: a name no resolver finds
    with contextlib.suppress(CallbackRefused):  # refused or let through: never a ValueError
        CallbackPolicy.build([], allow_private=False).check_url(url)


@pytest.mark.parametrize("entry", ["300.1.1.1/99", "10.0.0.0/33", "1.2.3.999", "a b", "127.1"])
def test_a_malformed_allow_list_entry_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match=r"is not|four decimal parts"):
        allowed_hosts(entry)


async def test_the_front_door_answers_400_to_loopback_in_disguise_unless_private_is_allowed(
    queue: QueueUnderTest, tmp_path: Path
) -> None:
    functions = write_functions(tmp_path / "f.yml", {"echo": {"url": "http://127.0.0.1:9"}})
    for allow_private, expected in (("false", 400), ("true", 202)):
        env = gateway_env(
            queue, functions_file=str(functions), callback_allow_private=allow_private
        )
        async with running_gateway(env) as front:
            for url in DISGUISED:
                # a host in other scripts is sent as UTF-8, as a client would send it
                data = request("POST", "/async-function/echo", "X-Callback-Url: URL")
                data = data.replace(b"URL", url.encode())
                status, _, body = await exchange(front.port, data)
                assert status == expected, (url, body)


async def test_the_worker_refuses_a_queued_disguised_callback_once_as_refused(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    gateway.function("echo")
    hosts = ["127.1", *IN_OTHER_SCRIPTS, *[f"[{host}]" for host in CARRYING_IPV4]]
    for host in hosts:  # queued as they are, as a publisher other than the front door could
        await queue.publish("echo", b"x", callback_url=f"http://{host}:{receiver.port}/cb")
    async with queue.worker(callback_allow_private="false", callback_max_attempts="1") as worker:
        await eventually(queue.drained, what="acked")
        outcomes = {
            outcome: worker.registry.get_sample_value(
                "queue_worker_callbacks_total", {"outcome": outcome}
            )
            for outcome in ("refused", "failed", "delivered")
        }
    assert receiver.received == []
    assert outcomes == {"refused": len(hosts), "failed": None, "delivered": None}

"""The callback SSRF guard: what a callback URL may point at."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from connectors.core.errors import CallbackRefused
from connectors.core.urlguard import CallbackPolicy, GuardedResolver

STRICT = CallbackPolicy.build([], allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "/relative/path",
        "http:///nohost",
        "http://127.0.0.1/cb",
        "http://10.1.2.3/cb",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/cb",
        "http://[::ffff:127.0.0.1]/cb",
        "http://example.com:99999/cb",
    ],
)
def test_refused_by_default(url: str) -> None:
    with pytest.raises(CallbackRefused):
        STRICT.check_url(url)


@pytest.mark.parametrize("url", ["https://hooks.example.com/cb", "http://93.184.216.34:8080/x"])
def test_public_targets_pass(url: str) -> None:
    STRICT.check_url(url)


def test_allow_list_names_wildcards_and_cidrs() -> None:
    policy = CallbackPolicy.build(["*.svc.cluster.local", "10.0.0.0/8", "receiver"], False)
    policy.check_url("http://10.4.5.6/cb")
    policy.check_url("http://cb.ns.svc.cluster.local/x")
    policy.check_url("http://receiver:8080/x")
    with pytest.raises(CallbackRefused):
        policy.check_url("http://192.168.1.1/x")


def test_allow_private_admits_private_ranges() -> None:
    CallbackPolicy.build([], allow_private=True).check_url("http://127.0.0.1:1/cb")


def fixed(*addresses: str) -> Callable[[str, int], Awaitable[list[str]]]:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


async def test_the_resolver_drops_private_answers() -> None:
    resolver = GuardedResolver(STRICT, fixed("10.0.0.1", "93.184.216.34"))
    assert await resolver("mixed.example", 80) == ["93.184.216.34"]


async def test_a_name_resolving_only_to_private_addresses_is_refused() -> None:
    resolver = GuardedResolver(STRICT, fixed("127.0.0.1"))
    with pytest.raises(CallbackRefused, match="refused"):
        await resolver("rebind.example", 80)


async def test_an_allow_listed_name_is_not_filtered() -> None:
    policy = CallbackPolicy.build(["internal.example"], False)
    resolver = GuardedResolver(policy, fixed("10.0.0.1"))
    assert len(await resolver("internal.example", 80)) == 1

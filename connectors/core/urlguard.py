"""Which callback URLs ferry may POST to (the SSRF guard).

A callback URL must be absolute http(s). Its host is then either named by the allow-list
(`callback_allowed_hosts`: exact names, `*.suffix` wildcards, IPs or CIDRs) or must resolve only
to public addresses, unless `callback_allow_private` is set. The check runs twice: on the URL's
text when the call is accepted, and on the addresses the name resolves to when the callback is
sent (`GuardedResolver`), so a DNS answer that changes in between cannot reach a private host.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from connectors.core.config import CallbackSettings
from connectors.core.errors import CallbackRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class CallbackPolicy:
    names: tuple[str, ...]
    networks: tuple[IPNetwork, ...]
    allow_private: bool

    @classmethod
    def from_settings(cls, settings: CallbackSettings) -> CallbackPolicy:
        return cls.build(settings.callback_allowed_hosts, settings.callback_allow_private)

    @classmethod
    def build(cls, entries: Iterable[str], allow_private: bool) -> CallbackPolicy:
        names: list[str] = []
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.append(entry.lower().rstrip("."))
        return cls(tuple(names), tuple(networks), allow_private)

    def host_listed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for name in self.names:
            if name == "*" or name == host:
                return True
            if name.startswith("*.") and host.endswith(name[1:]):
                return True
        return False

    def address_allowed(self, address: IPAddress) -> bool:
        if any(address in net for net in self.networks):
            return True
        return self.allow_private or _is_public(address)

    def check_url(self, url: str) -> str:
        """Validate the URL's text; return its host. Raises CallbackRefused with a reason."""
        return _checked_host(self, url)

    def _check_url(self, url: str) -> str:
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise CallbackRefused(f"callback URL {url!r} is malformed: {exc}") from None
        if parts.scheme not in {"http", "https"} or not host:
            raise CallbackRefused(f"callback URL {url!r} is not an absolute http(s) URL")
        if self.host_listed(host):
            return host
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host  # a name: its addresses are checked when it is resolved
        if not self.address_allowed(address):
            raise CallbackRefused(f"callback host {host} is a private or loopback address")
        return host


@functools.lru_cache(maxsize=4096)
def _checked_host(policy: CallbackPolicy, url: str) -> str:
    """Callers reuse a few callback URLs: remember the verdicts on their text (refusals raise
    and are not remembered). Addresses are still checked on every connection."""
    return policy._check_url(url)


class GuardedResolver(AbstractResolver):
    """Resolves callback hosts and drops the addresses the policy refuses."""

    def __init__(self, policy: CallbackPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        if self.policy.host_listed(host):
            return results
        allowed = [r for r in results if self.policy.address_allowed(_address(r))]
        if not allowed:
            raise OSError(f"callback host {host} resolves only to refused addresses")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


def _address(result: dict[str, Any] | ResolveResult) -> IPAddress:
    return ipaddress.ip_address(str(result["host"]).split("%")[0])

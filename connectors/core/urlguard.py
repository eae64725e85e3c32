"""Which callback URLs ferry may POST to (the SSRF guard).

A callback URL must be absolute http(s). Its host is then either named by the allow-list
(`callback_allowed_hosts`: exact names, `*.suffix` wildcards, IPs or CIDRs) or must resolve only
to public addresses, unless `callback_allow_private` is set. The check runs twice: on the URL's
text when the call is accepted, and on the addresses the name resolves to when the callback is
sent (`GuardedResolver`), so a DNS answer that changes in between cannot reach a private host.
A host is read as the resolver would read it (`hosts.host_address`: `127.1`, `2130706433`,
`127。0。0。1` and `localhost` are loopback), an IPv6 address that carries an IPv4 one (NAT64
`64:ff9b::7f00:1`, 6to4 `2002:7f00:1::`, `::127.0.0.1`) is judged by that IPv4 address, and a
refusal at either check is final.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from connectors.core.config import CallbackSettings
from connectors.core.errors import CallbackRefused
from connectors.core.hosts import LOCAL_NAT64, embedded_ipv4, host_address, resolver_name
from connectors.core.http1 import Resolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_public(address: IPAddress) -> bool:
    """Whether `address` is a public host; an IPv6 address that carries an IPv4 one (mapped,
    compatible, NAT64, 6to4, Teredo) is judged by the IPv4 host it reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in LOCAL_NAT64:
            return False
        embedded = embedded_ipv4(address)
        if embedded is not None:
            address = embedded
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
            raise CallbackRefused(f"callback URL {shown_url(url)!r} is malformed: {exc}") from None
        if parts.scheme not in {"http", "https"} or not host:
            raise CallbackRefused(f"callback URL {shown_url(url)!r} is not an absolute http(s) URL")
        try:
            host = resolver_name(host)  # `127。0。0。1` is looked up as `127.0.0.1`
        except ValueError as exc:
            raise CallbackRefused(f"callback URL {shown_url(url)!r}: {exc}") from None
        if self.host_listed(host):
            return host
        address = host_address(host)  # also `127.1`, `2130706433`, `localhost`
        if address is None:
            return host  # a name: its addresses are checked when it is resolved
        if not self.address_allowed(address):
            raise CallbackRefused(f"callback host {host} is a private or loopback address")
        return host


REDACTED = "redacted"
SHOWN_URL_CHARS = 2048


def shown_url(url: str) -> str:
    """A callback URL as ferry may show it (the call ledger, log lines, refusals): without user
    information, fragment, nor any query value, which may each hold a secret
    (`?token=...`); the query's names stay, so a reader still sees what the URL carried."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    host = parts.netloc.rpartition("@")[2]
    query = "&".join(
        name + (f"={REDACTED}" if sep else "")
        for name, sep, _ in (part.partition("=") for part in parts.query.split("&"))
    )
    return urlunsplit((parts.scheme, host, parts.path, query, ""))[:SHOWN_URL_CHARS]


@functools.lru_cache(maxsize=4096)
def _checked_host(policy: CallbackPolicy, url: str) -> str:
    """Callers reuse a few callback URLs: remember the verdicts on their text (refusals raise
    and are not remembered). Addresses are still checked on every connection."""
    return policy._check_url(url)


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, by the system resolver, in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedResolver:
    """Resolves callback hosts and drops the addresses the policy refuses (an `http1` resolver)."""

    def __init__(self, policy: CallbackPolicy, inner: Resolver = system_resolve) -> None:
        self.policy = policy
        self.inner = inner

    async def __call__(self, host: str, port: int) -> list[str]:
        addresses = await self.inner(host, port)
        if self.policy.host_listed(host):
            return addresses
        allowed = [a for a in addresses if self.policy.address_allowed(_address(a))]
        if not allowed:
            # not an OSError: the connection did not fail, the policy refused it (final)
            raise CallbackRefused(f"callback host {host} resolves only to refused addresses")
        return allowed


def _address(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%")[0])

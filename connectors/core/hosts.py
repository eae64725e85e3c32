"""Host names and numeric addresses as a resolver reads them, and the callback allow-list.

A URL's host can name a loopback or private address without looking like one: `2130706433`,
`0x7f000001`, `127.1` and `017700000001` are all 127.0.0.1 to the system resolver (the
`inet_aton` rules: one to four parts, each decimal, octal with a leading 0, or hex with 0x, the
last filling the bytes left), and `localhost` and every `*.localhost` name are loopback by
definition (RFC 6761). A name in other scripts is first mapped as the resolver maps it (IDNA:
`127。0。0。1` and `①②⑦.0.0.1` are `127.0.0.1`). `host_address` reads a host the same way, so
the SSRF guard can judge it before anything is resolved. An IPv6 address can also carry an IPv4
one to reach (`embedded_ipv4`: mapped, compatible, NAT64, 6to4, Teredo), which is what it
reaches and so what it is judged by.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_WHITESPACE = re.compile(r"[ \t\n\v\f\r]")
_NUMERIC_PART = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")
_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}")


def inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address the system resolver reads from a numeric host, or None for a name.

    Like glibc's, it stops at the first whitespace: `127.1 x` is 127.0.0.1 too."""
    host = _WHITESPACE.split(host, 1)[0]
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMERIC_PART.fullmatch(p) for p in parts):
        return None
    values: list[int] = []
    for part in parts:
        if len(part.lstrip("0xX")) > 11:  # past 2**32 in any base: no address (nor a huge int)
            return None
        if part[:2].lower() == "0x":
            values.append(int(part[2:], 16))
        elif len(part) > 1 and part[0] == "0":
            if not set(part) <= set("01234567"):
                return None
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *leading, last = values
    if any(v > 255 for v in leading) or last >= 256 ** (4 - len(leading)):
        return None
    number = last
    for index, value in enumerate(leading):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def resolver_name(host: str) -> str:
    """`host` as the resolver looks it up: a non-ASCII name in its IDNA form (Python's socket
    functions and ferry's http1 client encode it so: full-width dots and digits become ASCII
    ones). Raises ValueError for a name IDNA cannot encode, which no resolver can look up."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"host {host!r} is not a valid name: {exc}") from None


# RFC 6052's well-known NAT64 prefix (the IPv4 address in its last 32 bits) and RFC 8215's
# local-use one (where the operator chooses how the address is laid out: none of it is public)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # IPv4-compatible (deprecated, still routable)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 host an IPv6 address reaches through a translation or tunnel, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address, the one packets are sent on to
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def host_address(host: str) -> IPAddress | None:
    """The address `host` stands for without a DNS lookup (a literal, a numeric form, or a
    localhost name), or None if only resolving it can tell. Raises ValueError for a name no
    resolver can look up (`resolver_name`)."""
    name = resolver_name(host).lower()
    if name.endswith(".") and not name.endswith(".."):
        name = name[:-1]
    if name == "localhost" or name.endswith(".localhost"):
        return _LOOPBACK
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return inet_aton(name)


def allowed_hosts(text: str) -> tuple[str, ...]:
    """Parse `callback_allowed_hosts`: names, `*.suffix` wildcards, `*`, IPs or CIDRs.

    Raises ValueError for an entry that is none of these (e.g. `300.1.1.1/99`), which would
    otherwise be taken for a host name and never match anything."""
    entries = tuple(part.strip() for part in text.split(",") if part.strip())
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
            continue
        except ValueError:
            pass
        if inet_aton(entry) is not None:
            raise ValueError(f"{entry!r}: write an IPv4 address as four decimal parts")
        if "/" in entry or ":" in entry:
            raise ValueError(f"{entry!r} is not a valid IP address or CIDR")
        if re.fullmatch(r"[0-9.]+", entry) or not _NAME.fullmatch(entry.lower().rstrip(".")):
            raise ValueError(f"{entry!r} is not a host name, *.suffix, IP address or CIDR")
    return entries


def listen_address(text: str) -> str:
    """Parse an address to bind (`listen_host`, `health_host`): an IP address or a host name.

    Raises ValueError for what is neither (e.g. `999.1.1.1`), so the process says which
    variable is wrong instead of failing later with the resolver's error number."""
    value = text.strip()
    if re.fullmatch(r"[0-9.]+", value) or ":" in value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a valid IP address") from None
        return value
    if not _NAME.fullmatch(value.lower().rstrip(".")) or value.startswith("*"):
        raise ValueError(f"{value!r} is not an IP address or host name")
    return value

"""SSRF guard for destinations srv did not read from its config file (a pure decision).

A forward `backend` answers with URLs srv then connects to (and edge origins will come from
the same kind of place): whoever controls that answer, or what it echoes from a publisher,
could otherwise make the server connect to its own loopback services, the cloud metadata
endpoint (169.254.169.254) or hosts of the private network. So such a destination is refused
when any address its host resolves to is not a public one, unless the config allows it:
`forward { allow_private on; }` (everything) or `allow_private <cidr> ...;` (those networks).
Destinations written in the config are the operator's own and are trusted.

Refused: loopback, link-local, private (RFC 1918, IPv6 ULA), shared (100.64/10), unspecified,
reserved and documentation ranges (everything Python's `ipaddress` does not call global) and
multicast; an IPv4-mapped IPv6 address is judged as the IPv4 address it carries. Every address
a name resolves to must pass (the connection may use any of them); the caller connects to one
of the addresses checked, never to the name again, so the answer cannot change in between.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["ALLOW_ALL", "Network", "allowed_networks", "refusal"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ALLOW_ALL: tuple[Network, ...] = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def allowed_networks(allow_private: tuple[str, ...]) -> tuple[Network, ...]:
    """The networks an `allow_private` directive lets through: `on` all, `off` (or none) none."""
    if "on" in allow_private:
        return ALLOW_ALL
    return tuple(ipaddress.ip_network(a, strict=False) for a in allow_private if a != "off")


def _kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What makes `ip` non-public, or None for a public unicast address."""
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"
    return None


def refusal(addresses: Iterable[str], allowed: tuple[Network, ...] = ()) -> str | None:
    """Why a destination resolving to `addresses` is refused, or None if every one may be used."""
    for text in addresses:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(text.partition("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        kind = _kind(ip)
        if kind is not None and not any(ip.version == n.version and ip in n for n in allowed):
            return f"{text}, a {kind} address"
    return None

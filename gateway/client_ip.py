"""Who a request comes from, for per-IP limits: the socket peer, or what trusted proxies say it was.

``X-Forwarded-For`` is written by whoever sends the request, so it is read only when the socket peer is
one of the configured trusted proxies (``KASSA_GATEWAY_TRUSTED_PROXIES``), and then from the right: each
trusted proxy appends the address it got the request from, so the right-most address that is not itself
a trusted proxy is the one nobody in front of it could forge. Anything a client put further left is
ignored. An entry that isn't an address (which no proxy of ours writes) ends the walk at the last
trusted hop, so garbage can only put a request in the proxy's bucket, never in a fresh one of its own.

Limits are kept per *client key*: an IPv4 address, or an IPv6 address's /64 (one subscriber usually
holds a whole /64, so per-address keys would give them 2^64 fresh buckets).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["IPV6_PREFIX", "TrustedProxies", "client_ip", "client_key", "parse_networks"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

IPV6_PREFIX = 64
# More hops than any real proxy chain; a longer header is read only this far from the right.
_MAX_HOPS = 32


def parse_networks(raw: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.0.2.7, 2001:db8::/32"`` -> networks (a bare address is its own /32 or /128).

    Raises ValueError naming the entry that is neither.
    """
    networks: list[Network] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from exc
    return tuple(networks)


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    def __contains__(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def _address(text: str) -> IPAddress | None:
    """An address as a peer or a proxy writes it: ``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]:5678``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_ip(peer: str | None, forwarded_for: Sequence[str], trusted: TrustedProxies) -> IPAddress | None:
    """The client's address; None when even the socket peer isn't an address (a Unix socket, say).

    ``forwarded_for`` is every ``X-Forwarded-For`` header's value in the order received.
    """
    current = _address(peer) if peer else None
    if current is None or current not in trusted:
        return current
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops[-_MAX_HOPS:]):
        address = _address(hop)
        if address is None:
            return current
        if address not in trusted:
            return address
        current = address
    # Every hop is one of ours (a request from inside the trusted network): the left-most is the client.
    return current


def client_key(address: IPAddress | None) -> str:
    """The bucket a client's requests count in: the IPv4 address, or the IPv6 /64."""
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)

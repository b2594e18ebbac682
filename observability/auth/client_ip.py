"""The client address a sign-in is counted against (the throttle) and recorded with (the audit trail).

`X-Forwarded-For` is written by whoever sends the request, so it is believed only when the direct
peer is one of `TRUSTED_PROXIES` (CIDRs, default none): then the list is read from the right,
skipping trusted proxies, and the first other address is the client. Otherwise the peer's own
address counts, so a client cannot dodge the throttle by inventing a new address per request.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from observability.settings import Settings, get_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _ip(value: str | None) -> IPAddress | None:
    try:
        return ipaddress.ip_address((value or "").strip().strip("[]"))
    except ValueError:
        return None


def _trusted(ip: IPAddress | None, networks: tuple[IPNetwork, ...]) -> bool:
    return ip is not None and any(ip in n for n in networks)


def client_address(
    peer: str | None, forwarded_for: str | None = None, settings: Settings | None = None
) -> str:
    """The client's address: the peer's, or (behind a trusted proxy) the nearest untrusted hop."""
    networks = _networks((settings or get_settings()).trusted_proxies)
    peer_ip = _ip(peer)
    if not forwarded_for or not _trusted(peer_ip, networks):
        return peer or "unknown"
    for hop in reversed(forwarded_for.split(",")):
        ip = _ip(hop)
        if ip is None:  # a garbled entry: the hops to its left cannot be believed either
            break
        if not _trusted(ip, networks):
            return str(ip)
    return peer or "unknown"

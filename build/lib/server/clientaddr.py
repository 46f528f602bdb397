"""The client's address: the peer, or what a trusted proxy says in X-Forwarded-For."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """`server.trusted_proxies` entries (addresses or CIDR networks) as networks."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: web.BaseRequest, trusted: tuple[Network, ...]) -> str:
    """Walk X-Forwarded-For from the right past trusted proxies; the first other hop is
    the client. Headers from untrusted peers are ignored, so they cannot be spoofed."""
    peer = request.remote or "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
    ]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop if _is_address(hop) else peer
    return hops[0] if hops and _is_address(hops[0]) else peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def address_of(request: web.Request) -> str:
    """The request's client address, computed once per request."""
    from . import keys  # keys imports this module's types

    if keys.CLIENT_ADDRESS not in request:
        request[keys.CLIENT_ADDRESS] = client_address(
            request, request.app[keys.TRUSTED_PROXIES]
        )
    return request[keys.CLIENT_ADDRESS]

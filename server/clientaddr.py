"""The client's address: the peer, or what a trusted proxy says in X-Forwarded-For.

One canonical text per address, so that the log and every counter agree: IPv6 in its
compressed lower-case form (`2001:DB8::1` and `2001:0db8:0000::0001` are `2001:db8::1`),
IPv4-mapped IPv6 (`::ffff:10.0.0.1`, what a dual-stack socket reports for an IPv4
client) as plain IPv4. Rate limits count IPv6 clients per network (`rate_limit_key`):
one host usually owns a whole /64, i.e. 2^64 addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAPPED_IPV4 = ipaddress.IPv6Network("::ffff:0:0/96")
DEFAULT_IPV6_PREFIX = 64
UNKNOWN = "unknown"


def parse_address(text: str) -> Address | None:
    """The address in `text`, an IPv4-mapped IPv6 address as IPv4; None if `text` is
    not an address."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def canonical_address(text: str) -> str:
    """The one text of an address; anything that is not an address is left as it is."""
    ip = parse_address(text)
    return text if ip is None else str(ip)


def rate_limit_key(address: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """What per-address limits count against: an IPv4 address itself, an IPv6 address's
    network of `ipv6_prefix` bits (`2001:db8:1:2::/64`; at 128 the address itself).
    Any spelling of one address, mapped or not, gives the same key."""
    ip = parse_address(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv4Address) or ipv6_prefix >= 128:
        return str(ip)
    shift = 128 - ipv6_prefix
    network = ipaddress.IPv6Network(((int(ip) >> shift) << shift, ipv6_prefix))
    return str(network)


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """`server.trusted_proxies` entries (addresses or CIDR networks) as networks. An
    entry within ::ffff:0:0/96 is taken as the IPv4 network it maps, since peers are
    compared in their canonical form."""
    networks: list[Network] = []
    for entry in entries:
        network = ipaddress.ip_network(entry.strip(), strict=False)
        if (
            isinstance(network, ipaddress.IPv6Network)
            and network.prefixlen >= MAPPED_IPV4.prefixlen
            and network.subnet_of(MAPPED_IPV4)
        ):
            low_bits = int(network.network_address) & 0xFFFFFFFF
            network = ipaddress.IPv4Network((low_bits, network.prefixlen - 96))
        networks.append(network)
    return tuple(networks)


def _trusted(ip: Address | None, networks: tuple[Network, ...]) -> bool:
    return ip is not None and any(ip in network for network in networks)


def peer_is_trusted(request: web.BaseRequest, trusted: tuple[Network, ...]) -> bool:
    """Whether the peer (not a forwarded hop) is in `trusted`, in its canonical form:
    an IPv4-mapped peer matches the IPv4 networks."""
    return bool(trusted) and _trusted(parse_address(request.remote or ""), trusted)


def _hop(text: str) -> Address | None:
    """One X-Forwarded-For entry; some proxies add a port (`1.2.3.4:5678`,
    `[2001:db8::1]:443`)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    return parse_address(text)


def client_address(request: web.BaseRequest, trusted: tuple[Network, ...]) -> str:
    """Walk X-Forwarded-For from the right past trusted proxies; the first other hop is
    the client. Headers from untrusted peers are ignored, so they cannot be spoofed.
    The answer is canonical (see the module's docstring)."""
    peer_text = request.remote or UNKNOWN
    peer = parse_address(peer_text)
    fallback = peer_text if peer is None else str(peer)
    if not peer_is_trusted(request, trusted):
        return fallback
    hops = [
        hop
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
    ]
    for text in reversed(hops):
        ip = _hop(text)
        if not _trusted(ip, trusted):
            return fallback if ip is None else str(ip)
    first = _hop(hops[0]) if hops else None
    return fallback if first is None else str(first)


def address_of(request: web.Request) -> str:
    """The request's canonical client address, computed once per request."""
    from . import keys  # keys imports this module's types

    if keys.CLIENT_ADDRESS not in request:
        request[keys.CLIENT_ADDRESS] = client_address(
            request, request.app[keys.TRUSTED_PROXIES]
        )
    return request[keys.CLIENT_ADDRESS]


def client_key(request: web.Request) -> str:
    """`rate_limit_key` of the request's client with `ratelimit.ipv6_prefix`."""
    from . import keys

    prefix = request.app[keys.AUTH].settings.ratelimit.ipv6_prefix
    return rate_limit_key(address_of(request), prefix)

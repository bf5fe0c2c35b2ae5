"""The client's address behind reverse proxies: the right-most X-Forwarded-For entry that is not
one of the operator's own proxies.

Each proxy appends the address it received the connection from, so only entries written by trusted
proxies can be believed; everything to their left was written by the client (or by proxies the
client chose) and is free to lie. Walking from the right and skipping the trusted proxies finds
the first address no trusted party vouches for beyond: that is the client as far as anyone knows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """CIDR blocks or single addresses; a ValueError names the one that is not."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {spec!r} is not an IP address or CIDR block") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in proxies)


def client_address(peer: str, forwarded_for: Sequence[str], proxies: Sequence[Network] = ()) -> str:
    """The client's address from the TCP peer and the X-Forwarded-For header values (in the order
    received); `proxies` are the operator's proxies (none: believe only the right-most entry).

    >>> client_address("10.0.0.2", ["6.6.6.6, 203.0.113.7"])
    '203.0.113.7'
    >>> client_address("10.0.0.2", ["6.6.6.6, 203.0.113.7, 10.0.0.9"], parse_networks(["10.0.0.0/8"]))
    '203.0.113.7'
    >>> client_address("198.51.100.1", ["6.6.6.6"], parse_networks(["10.0.0.0/8"]))  # not via a proxy
    '198.51.100.1'
    """
    if proxies:
        peer_address = _address(peer)
        if peer_address is None or not _trusted(peer_address, proxies):
            return peer  # the header was not written by one of our proxies
    entries = [entry for value in forwarded_for for entry in value.split(",") if entry.strip()]
    found = peer
    for entry in reversed(entries):
        address = _address(entry)
        if address is None:
            return found  # a trusted proxy never writes garbage: the client did, so stop here
        found = str(address)
        if not _trusted(address, proxies):
            return found
    return found  # every hop is one of ours: the call came from inside

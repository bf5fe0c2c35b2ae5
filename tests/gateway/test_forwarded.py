"""The client's address behind proxies: (peer, X-Forwarded-For, trusted proxies) -> address."""

from __future__ import annotations

import pytest

from distillguard.gateway.forwarded import client_address, parse_networks

OURS = parse_networks(["10.0.0.0/8", "2001:db8::/32"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "proxies", "client"),
    [
        # no trusted set: only the right-most entry (written by the proxy in front) is believed
        ("10.0.0.2", ["6.6.6.6, 203.0.113.7"], (), "203.0.113.7"),
        ("10.0.0.2", ["6.6.6.6", "203.0.113.7"], (), "203.0.113.7"),  # two header lines, in order
        ("10.0.0.2", ["203.0.113.7:4431"], (), "203.0.113.7"),
        ("10.0.0.2", ["[2001:db8::1]:443"], (), "2001:db8::1"),
        ("10.0.0.2", ["6.6.6.6, junk"], (), "10.0.0.2"),
        ("10.0.0.2", ["", " , "], (), "10.0.0.2"),
        # trusted proxies: skipped from the right; the first untrusted hop is the client
        ("10.0.0.2", ["6.6.6.6, 203.0.113.7, 10.9.9.9"], OURS, "203.0.113.7"),
        ("10.0.0.2", ["6.6.6.6, 203.0.113.7, 2001:db8::9"], OURS, "203.0.113.7"),
        ("10.0.0.2", ["10.1.1.1, 10.9.9.9"], OURS, "10.1.1.1"),  # every hop is ours: an internal caller
        ("10.0.0.2", ["6.6.6.6, junk, 10.9.9.9"], OURS, "10.9.9.9"),
        # a connection that does not come from one of our proxies: the header is the client's own
        ("198.51.100.1", ["6.6.6.6"], OURS, "198.51.100.1"),
    ],
)
def test_the_rightmost_untrusted_address_is_the_client(
    peer: str, forwarded_for: list[str], proxies: tuple, client: str
) -> None:
    assert client_address(peer, forwarded_for, proxies) == client


def test_a_bad_trusted_proxy_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        parse_networks(["10.0.0.300"])

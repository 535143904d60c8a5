"""Whose address a request counts against: X-Forwarded-For is believed only from trusted proxies.

An attacker sends whatever X-Forwarded-For they like; each trusted proxy appends the address it got the
request from. So the client is the right-most address that isn't one of our proxies, and an untrusted
peer's header is ignored whole: a forged header must never buy a fresh bucket.
"""

from __future__ import annotations

import ipaddress

import pytest

from gateway.client_ip import TrustedProxies, client_ip, client_key, parse_networks

pytestmark = pytest.mark.unit

PROXIES = TrustedProxies(parse_networks("10.0.0.0/8, 192.0.2.10, 2001:db8:ffff::/48"))


def ip(peer: str | None, *forwarded: str, trusted: TrustedProxies = PROXIES) -> str | None:
    found = client_ip(peer, list(forwarded), trusted)
    return None if found is None else str(found)


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert ip("203.0.113.5", "198.51.100.1", trusted=TrustedProxies()) == "203.0.113.5"


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    assert ip("203.0.113.5", "198.51.100.1") == "203.0.113.5"
    assert ip("203.0.113.5", "10.0.0.1") == "203.0.113.5"


def test_behind_one_proxy_the_address_it_appended_is_the_client() -> None:
    assert ip("10.1.2.3", "198.51.100.7") == "198.51.100.7"


def test_what_the_client_wrote_left_of_the_proxies_is_ignored() -> None:
    # The client forged "1.1.1.1, 10.0.0.9"; the edge proxy appended the real peer, 198.51.100.7.
    assert ip("10.1.2.3", "1.1.1.1, 10.0.0.9, 198.51.100.7") == "198.51.100.7"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right() -> None:
    assert ip("10.1.2.3", "198.51.100.7, 192.0.2.10, 10.9.9.9") == "198.51.100.7"


def test_several_headers_are_one_list_in_order() -> None:
    assert ip("10.1.2.3", "6.6.6.6, 198.51.100.7", "10.4.4.4") == "198.51.100.7"


def test_all_hops_trusted_gives_the_left_most() -> None:
    assert ip("10.1.2.3", "10.0.0.7, 10.0.0.8") == "10.0.0.7"
    assert ip("10.1.2.3") == "10.1.2.3"


@pytest.mark.parametrize("junk", ["unknown", "", "not-an-ip", "1.2.3.4.5", "é", "_hidden"])
def test_garbage_right_of_the_client_stops_at_the_last_trusted_hop(junk: str) -> None:
    assert ip("10.1.2.3", f"198.51.100.7, {junk}") == "10.1.2.3"
    assert ip("10.1.2.3", f"198.51.100.7, {junk}, 10.0.0.5") == "10.0.0.5"


def test_ports_brackets_and_mapped_addresses_are_understood() -> None:
    assert ip("10.1.2.3", "198.51.100.7:5555") == "198.51.100.7"
    assert ip("10.1.2.3", "[2001:db8::1]:443") == "2001:db8::1"
    assert ip("10.1.2.3", "2001:db8::1") == "2001:db8::1"
    assert ip("::ffff:10.1.2.3", "::ffff:198.51.100.7") == "198.51.100.7"
    assert ip("2001:db8:ffff::1", "203.0.113.1") == "203.0.113.1"


def test_a_peer_that_is_no_address_has_none() -> None:
    assert ip(None, "198.51.100.7") is None
    assert ip("unix-socket", "198.51.100.7") is None
    assert client_key(None) == "unknown"


def test_a_huge_header_is_read_only_a_few_hops_from_the_right() -> None:
    forged = ", ".join(["10.0.0.1"] * 100_000)
    assert ip("10.1.2.3", f"198.51.100.7, {forged}") == "10.0.0.1"


def test_ipv6_clients_share_a_bucket_per_64() -> None:
    a = client_key(ipaddress.ip_address("2001:db8:1:2::1"))
    b = client_key(ipaddress.ip_address("2001:db8:1:2:ffff:ffff:ffff:ffff"))
    c = client_key(ipaddress.ip_address("2001:db8:1:3::1"))
    assert a == b == "2001:db8:1:2::/64"
    assert c != a
    assert client_key(ipaddress.ip_address("198.51.100.7")) == "198.51.100.7"


@pytest.mark.parametrize("raw", ["10.0.0.0/33", "nope", "10.0.0.0/8;rm", "::/129"])
def test_a_bad_proxy_list_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        parse_networks(raw)


def test_a_proxy_list_may_have_spaces_and_empty_entries() -> None:
    assert len(parse_networks(" 10.0.0.0/8 , ,192.0.2.1,")) == 2

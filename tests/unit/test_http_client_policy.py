"""The outgoing policy: host patterns, CIDR ranges, allow-list mode, deny wins."""

import pytest

from porch.http_client.policy import OutgoingPolicy, PolicyError, normalize_host, parse_address


def test_default_allows_everything_without_resolving() -> None:
    policy = OutgoingPolicy()
    assert policy.allows_everything and not policy.needs_addresses
    assert policy.check("127.0.0.1") is None
    assert policy.check("anything.example", ["10.0.0.1"]) is None


def test_deny_hosts_exact_and_wildcard() -> None:
    policy = OutgoingPolicy(deny_hosts=["evil.example", "*.corp.example"])
    assert policy.check("EVIL.example.") is not None  # case and trailing dot
    assert policy.check("sub.evil.example") is None  # exact means exact
    assert policy.check("a.corp.example") is not None
    assert policy.check("a.b.corp.example") is not None
    assert policy.check("corp.example") is None  # the wildcard is for subdomains
    assert policy.check("notcorp.example") is None
    assert not policy.needs_addresses  # names only: no resolution needed


def test_deny_networks_checks_literals_and_resolved_addresses() -> None:
    policy = OutgoingPolicy(deny_networks=["10.0.0.0/8", "fd00::/8"])
    assert policy.needs_addresses
    assert "10.0.0.0/8" in (policy.check("10.1.2.3") or "")
    assert policy.check("[fd00::1]") is not None
    assert policy.check("::ffff:10.0.0.1") is not None  # IPv4-mapped IPv6 unwrapped
    assert policy.check("11.0.0.1") is None
    assert policy.check("intranet.example") is None  # undecided before resolution
    assert policy.check("intranet.example", ["10.9.9.9"]) is not None
    # Every address must pass: one bad address among good ones is refused.
    assert policy.check("mixed.example", ["93.184.216.34", "10.0.0.1"]) is not None
    assert policy.check("public.example", ["93.184.216.34", "2606:2800::1"]) is None
    assert policy.check("nothing.example", []) is not None


def test_deny_private_covers_the_usual_suspects() -> None:
    policy = OutgoingPolicy(deny_private=True)
    for addr in ("127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
                 "100.64.0.1", "0.0.0.0", "::1", "fd12::1", "fe80::1", "224.0.0.1", "255.255.255.255"):
        assert policy.check(addr) is not None, addr
    for addr in ("8.8.8.8", "93.184.216.34", "2606:4700::1111", "172.32.0.1"):
        assert policy.check(addr) is None, addr
    assert policy.check("localhost", ["127.0.0.1", "::1"]) is not None


def test_allow_list_of_hosts_only() -> None:
    policy = OutgoingPolicy(allow_hosts=["api.example", "*.cdn.example"])
    assert policy.check("api.example") is None
    assert policy.check("x.cdn.example") is None
    assert policy.check("other.example") is not None  # decided from the name alone
    assert policy.check("1.2.3.4") is not None


def test_allow_list_of_networks_needs_every_address_inside() -> None:
    policy = OutgoingPolicy(allow_networks=["192.0.2.0/24"])
    assert policy.check("192.0.2.7") is None
    assert policy.check("198.51.100.1") is not None
    assert policy.check("svc.example") is None  # undecided until resolved
    assert policy.check("svc.example", ["192.0.2.9"]) is None
    assert policy.check("svc.example", ["192.0.2.9", "198.51.100.1"]) is not None
    # Through a proxy the addresses are never known: refused.
    assert policy.check("svc.example", final=True) is not None


def test_deny_wins_over_allow() -> None:
    policy = OutgoingPolicy(allow_hosts=["*.example"], deny_hosts=["bad.example"],
                            deny_networks=["10.0.0.0/8"])
    assert policy.check("good.example", ["203.0.113.1"]) is None
    assert policy.check("bad.example") is not None
    assert policy.check("good.example", ["10.1.1.1"]) is not None


@pytest.mark.parametrize("kwargs", [
    {"deny_networks": ["10.0.0.0/33"]}, {"allow_networks": ["not-a-net"]},
    {"deny_hosts": ["a*.example"]}, {"deny_hosts": ["*."]}, {"allow_hosts": ["10.0.0.0/8"]},
    {"deny_hosts": [""]},
])
def test_bad_settings_are_refused(kwargs: dict[str, list[str]]) -> None:
    with pytest.raises(PolicyError):
        OutgoingPolicy(**kwargs)  # type: ignore[arg-type]


def test_helpers() -> None:
    assert normalize_host("[::1]") == "::1"
    assert normalize_host("B\u00fccher.Example.") == "xn--bcher-kva.example"
    assert str(parse_address("fe80::1%eth0")) == "fe80::1"
    assert parse_address("example.com") is None

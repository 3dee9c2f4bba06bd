"""The outgoing policy: host patterns, CIDR ranges, allow-list mode, deny wins."""

import ipaddress

import pytest

from porch.http_client.policy import (
    PRIVATE_NETWORKS,
    OutgoingPolicy,
    PolicyError,
    embedded_ipv4,
    normalize_host,
    parse_address,
)


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


@pytest.mark.parametrize("patterns, denied, allowed", [
    (["evil.example"], ["evil.example", "EVIL.EXAMPLE."], ["a.evil.example", "good.example"]),
    (["*.corp.example"], ["a.corp.example", "x.y.corp.example"], ["corp.example", "good.example"]),
])
def test_a_deny_list_of_only_names_or_only_wildcards(patterns: list[str], denied: list[str],
                                                     allowed: list[str]) -> None:
    policy = OutgoingPolicy(deny_hosts=patterns)
    assert not policy.allows_everything
    for host in denied:
        assert policy.check(host) is not None, host
    for host in allowed:
        assert policy.check(host) is None, host


@pytest.mark.parametrize("patterns, allowed, denied", [
    (["api.example"], ["api.example"], ["x.api.example", "other.example"]),
    (["*.cdn.example"], ["a.cdn.example"], ["cdn.example", "other.example"]),
])
def test_an_allow_list_of_only_names_or_only_wildcards(patterns: list[str], allowed: list[str],
                                                       denied: list[str]) -> None:
    policy = OutgoingPolicy(allow_hosts=patterns)
    assert policy.allow_list_mode
    for host in allowed:
        assert policy.check(host) is None, host
    for host in denied:
        assert policy.check(host) is not None, host


def test_the_refusal_names_the_rule_as_written() -> None:
    policy = OutgoingPolicy(deny_hosts=["*.corp.example", "evil.example"])
    assert "'*.corp.example'" in (policy.check("a.corp.example") or "")
    assert "'evil.example'" in (policy.check("evil.example") or "")


@pytest.mark.parametrize("setting, entry, inside, outside", [
    ("deny_networks", "10.1.2.3/8", "10.200.0.1", "11.0.0.1"),
    ("deny_networks", "fd00::1/8", "fdff::2", "fe00::1"),
    ("allow_networks", "192.0.2.77/24", "192.0.2.1", "192.0.3.1"),
])
def test_a_range_with_host_bits_set_means_its_network(setting: str, entry: str, inside: str,
                                                      outside: str) -> None:
    policy = OutgoingPolicy(**{setting: [entry]})  # type: ignore[arg-type]
    denied_inside = setting == "deny_networks"
    assert (policy.check(inside) is not None) == denied_inside
    assert (policy.check(outside) is not None) != denied_inside


@pytest.mark.parametrize("net", PRIVATE_NETWORKS)
def test_deny_private_covers_each_range_from_end_to_end(net: str) -> None:
    policy = OutgoingPolicy(deny_private=True)
    network = ipaddress.ip_network(net)
    for addr in (network.network_address, network.broadcast_address):
        assert policy.check(str(addr)) is not None, addr
        assert policy.check("name.example", [str(addr)]) is not None, addr


@pytest.mark.parametrize("addr", ["9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0",
                                  "126.255.255.255", "128.0.0.0", "169.253.255.255", "169.255.0.0",
                                  "172.15.255.255", "172.32.0.0", "192.167.255.255", "192.169.0.0",
                                  "198.17.255.255", "198.20.0.0", "223.255.255.255", "::1:0:0",
                                  "::fffe:ffff:ffff:ffff", "::ffff:1:0:0",
                                  "64:ff9b:0:ffff:ffff:ffff:ffff:ffff", "64:ff9b:2::",
                                  "fbff:ffff::1", "fe00::1"])
def test_deny_private_leaves_the_public_neighbours_of_each_range(addr: str) -> None:
    assert OutgoingPolicy(deny_private=True).check(addr) is None


@pytest.mark.parametrize("kwargs, named", [
    ({"deny_hosts": ["*.*.example"]}, "deny_hosts: bad pattern '*.*.example'"),
    ({"allow_hosts": ["*.a*b.example"]}, "allow_hosts: bad pattern '*.a*b.example'"),
    ({"allow_hosts": ["a/b"]}, "allow_hosts: bad host 'a/b'"),
    ({"deny_hosts": ["*"]}, "deny_hosts: bad host '*'"),
    ({"allow_networks": ["10.0.0.0/99"]}, "allow_networks: '10.0.0.0/99' is not a CIDR"),
    ({"deny_networks": ["nope"]}, "deny_networks: 'nope' is not a CIDR"),
])
def test_a_bad_setting_is_named_with_the_entry(kwargs: dict[str, list[str]], named: str) -> None:
    with pytest.raises(PolicyError) as info:
        OutgoingPolicy(**kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(named)


def test_only_a_whole_pair_of_brackets_is_unwrapped() -> None:
    assert normalize_host("[::1]") == "::1"
    assert normalize_host("[::1") == "[::1"
    assert normalize_host("::1]") == "::1]"


def test_the_zone_id_is_everything_after_the_first_percent() -> None:
    assert str(parse_address("fe80::1%eth0")) == "fe80::1"
    assert str(parse_address("fe80::1%eth0%1")) == "fe80::1"


# An IPv6 address that carries an IPv4 one (NAT64, 6to4, Teredo...) reaches that IPv4
# host, or passes through it: a denied IPv4 range is denied in these forms too.
CARRIERS = [
    ("64:ff9b::a00:1", "10.0.0.1"),                          # NAT64 well-known prefix
    ("64:ff9b::7f00:1", "127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
    ("::a00:1", "10.0.0.1"),                                 # IPv4-compatible
    ("::ffff:0:a00:1", "10.0.0.1"),                          # IPv4-translated
    ("2002:a00:1::1", "10.0.0.1"),                           # 6to4: bits 16-47
    ("2002:c0a8:101:5::9", "192.168.1.1"),
    ("2001:0:a00:1:0:0:f5ff:fffe", "10.0.0.1"),             # Teredo server
    ("2001:0:808:808:0:0:f5ff:fffe", "10.0.0.1"),           # Teredo client (bits inverted)
]


@pytest.mark.parametrize("addr, ipv4", CARRIERS)
def test_a_denied_ipv4_range_is_denied_inside_ipv6_forms_that_carry_it(addr: str, ipv4: str) -> None:
    assert ipaddress.ip_address(ipv4) in embedded_ipv4(ipaddress.ip_address(addr))
    for literal in (addr, f"[{addr}]"):
        reason = OutgoingPolicy(deny_networks=[f"{ipv4}/32"]).check(literal)
        assert reason is not None and f"carries {ipv4}" in reason, (literal, reason)
    for policy in (OutgoingPolicy(deny_networks=[f"{ipv4}/32"]), OutgoingPolicy(deny_private=True)):
        assert policy.check(addr) is not None
        assert policy.check("name.example", ["93.184.216.34", addr]) is not None
        assert policy.check("name.example", [addr], final=True) is not None


@pytest.mark.parametrize("addr", ["64:ff9b::808:808", "64:ff9b::5db8:d822", "2002:808:808::1",
                                  "2001:0:808:808:0:0:a2b7:22dd"])
def test_ipv6_forms_of_public_ipv4_addresses_stay_reachable(addr: str) -> None:
    """DNS64 gives every IPv4-only site a 64:ff9b:: address: refusing the whole prefix
    would cut an IPv6-only node off them."""
    assert OutgoingPolicy(deny_private=True).check(addr) is None
    assert OutgoingPolicy(deny_networks=["10.0.0.0/8"]).check("name.example", [addr]) is None


def test_only_the_forms_that_carry_an_ipv4_address_are_read_as_one() -> None:
    for addr in ("2606:4700::a00:1", "64:ff9b:0:1::a00:1", "2003:a00:1::1", "2001:1::a00:1",
                 "10.0.0.1", "::ffff:1:a00:1"):
        assert embedded_ipv4(ipaddress.ip_address(addr)) == (), addr
    # A denied IPv6 range is not read inside anything: only the address itself.
    policy = OutgoingPolicy(deny_networks=["::a00:0/104"])
    assert policy.check("10.0.0.1") is None
    assert policy.check("::a00:1") is not None


def test_the_denial_names_the_address_and_what_it_carries() -> None:
    policy = OutgoingPolicy(deny_networks=["10.0.0.0/8", "fd00::/8"])
    assert policy.check("api.example", ["64:ff9b::a00:1"]) == (
        "address 64:ff9b::a00:1 of api.example (it carries 10.0.0.1) is in denied network 10.0.0.0/8")
    assert policy.check("api.example", ["fd00::1"]) == (
        "address fd00::1 of api.example is in denied network fd00::/8")


def test_allow_networks_read_an_address_as_it_is_written() -> None:
    """Only denial looks inside: an allowed IPv4 range does not allow its NAT64 form."""
    policy = OutgoingPolicy(allow_networks=["192.0.2.0/24"])
    assert policy.check("svc.example", ["192.0.2.9"]) is None
    assert policy.check("svc.example", ["64:ff9b::c000:209"]) is not None

"""Host parsing, the Host allow-list and the Origin == Host comparison (issue 9 items
1, 11 and 8), pure."""

from __future__ import annotations

import pytest

from porch.http_server.hosts import HostAllowList, check_pattern, host_problem, parse_host, same_origin
from porch.http_server.settings import load_settings
from porch.node.config import ConfigError


@pytest.mark.parametrize(("value", "parsed"), [
    ("localhost", ("localhost", None)),
    ("LocalHost:8080", ("localhost", 8080)),
    ("node.example.com.", ("node.example.com", None)),
    ("127.0.0.1:80", ("127.0.0.1", 80)),
    ("[::1]:8080", ("[::1]", 8080)),
    ("[::1]", ("[::1]", None)),
    ("x:", ("x", None)),  # RFC 3986: the port may be empty
])
def test_parse_host(value: str, parsed: tuple[str, int | None]) -> None:
    assert parse_host(value) == parsed


@pytest.mark.parametrize("value", [
    "", ":80", ".localhost", "a..b", "a b", "evil.com@localhost", "localhost:99999",
    "localhost:8o", "[::1", "[nothex]:1", "::1", "a/b", "x\u00e9.com", "localhost:\u0661",
    "a" * 254,
])
def test_parse_host_refuses(value: str) -> None:
    assert parse_host(value) is None


def test_default_names() -> None:
    hosts = HostAllowList()
    for name in ("localhost", "pkg-pub-os.localhost", "a.b.localhost", "127.0.0.1", "10.1.2.3",
                 "[::1]", "[fe80::1]"):
        assert hosts.allows(name), name
    for name in ("evil.example", "localhost.evil.example", "xlocalhost", "127.0.0.1.nip.io",
                 "0x7f000001", "2130706433"):
        assert not hosts.allows(name), name


def test_allowed_hosts_patterns() -> None:
    hosts = HostAllowList(["Node.Example.com", "*.wild.org", ".dot.net"])
    assert hosts.allows("node.example.com")
    assert hosts.allows("pkg-pub-os.node.example.com"), "one label in front: a secure subdomain"
    assert not hosts.allows("a.b.node.example.com")
    assert not hosts.allows("example.com")
    assert hosts.allows("x.wild.org") and hosts.allows("x.y.wild.org")
    assert not hosts.allows("wild.org")
    assert hosts.allows("dot.net") and hosts.allows("a.b.dot.net")
    assert not hosts.allows("evildot.net") and not hosts.allows("evilwild.org")
    assert HostAllowList(["*"]).allows("anything.example")


@pytest.mark.parametrize("entry", ["node.example.com:8080", "http://x", "a b", "*x.com", "", "*.", "x..y"])
def test_bad_allowed_hosts_entries_fail_the_config(entry: str) -> None:
    with pytest.raises(ValueError):
        check_pattern(entry)
    with pytest.raises(ConfigError, match="allowed_hosts"):
        load_settings({"allowed_hosts": [entry]})


def test_allowed_hosts_setting_loads() -> None:
    assert load_settings({"allowed_hosts": ["node.example.com", ".x.org"]}).allowed_hosts == (
        "node.example.com", ".x.org")
    assert load_settings({}).allowed_hosts == ()


def test_host_problem() -> None:
    """RFC 9112 3.2: HTTP/1.1 needs exactly one Host; HTTP/1.0 may have none."""
    hosts = HostAllowList()
    assert host_problem("HTTP/1.1", ["localhost:1"], hosts) is None
    assert host_problem("HTTP/1.0", [], hosts) is None
    assert "missing" in (host_problem("HTTP/1.1", [], hosts) or "")
    assert "more than one" in (host_problem("HTTP/1.1", ["localhost", "localhost"], hosts) or "")
    assert "more than one" in (host_problem("HTTP/1.0", ["localhost", "evil"], hosts) or "")
    assert "invalid" in (host_problem("HTTP/1.1", [""], hosts) or "")
    assert "does not answer" in (host_problem("HTTP/1.1", ["evil.example:80"], hosts) or "")


@pytest.mark.parametrize(("origin", "host", "same"), [
    ("http://localhost:8080", "localhost:8080", True),
    ("http://LOCALHOST:8080", "localhost:8080", True),
    ("https://node.example.com", "node.example.com", True),  # a TLS proxy in front
    ("http://node.example.com", "node.example.com:80", True),
    ("https://node.example.com", "node.example.com:443", True),
    ("http://[::1]:8080", "[::1]:8080", True),
    ("http://localhost:8081", "localhost:8080", False),
    ("http://evil.example:8080", "localhost:8080", False),
    ("http://pkg-pub-os.localhost:8080", "localhost:8080", False),  # a secure subdomain's page
    ("http://localhost", "localhost:8080", False),
    ("https://node.example.com", "node.example.com:80", False),
    ("null", "localhost:8080", False),
    ("file://", "localhost", False),
    ("http://localhost:8080/path", "localhost:8080", False),
    ("http://user@localhost:8080", "localhost:8080", False),
    ("http://localhost:8080", "", False),
])
def test_same_origin(origin: str, host: str, same: bool) -> None:
    assert same_origin(origin, host) is same


# ---------------------------------------------------------------------- exact rules (issue 16)


def test_names_are_bounded_at_253_characters() -> None:
    name = ".".join(["a" * 63] * 4)[:253]
    assert len(name) == 253 and parse_host(name) == (name, None)
    assert parse_host(name + "a") is None
    assert check_pattern(name) == name and check_pattern("*." + name) == "*." + name
    with pytest.raises(ValueError):
        check_pattern(name + "a")


def test_ports_run_to_65535() -> None:
    assert parse_host("localhost:65535") == ("localhost", 65535)
    assert parse_host("[::1]:65535") == ("[::1]", 65535)
    assert parse_host("localhost:65536") is None


@pytest.mark.parametrize("literal", ["[1::2:3]", "[::ffff:127.0.0.1]", "[2001:db8::1]"])
def test_an_ipv6_literal_is_read_whole(literal: str) -> None:
    assert parse_host(literal + ":80") == (literal, 80)
    assert HostAllowList().allows(literal), "any IP literal is accepted"


@pytest.mark.parametrize("entry, pattern, allowed", [
    ("Node.Example.com.", "node.example.com", "node.example.com"),
    ("*.wild.org.", "*.wild.org", "a.wild.org"),
    (".dot.net.", ".dot.net", "dot.net"),
])
def test_a_pattern_s_trailing_dot_is_dropped(entry: str, pattern: str, allowed: str) -> None:
    assert check_pattern(entry) == pattern
    assert HostAllowList([entry]).allows(allowed)


@pytest.mark.parametrize("entry, says", [
    ("node.example.com:8080", "'node.example.com:8080': write the name without a port"),
    ("*.x.org:1", "'*.x.org:1': write the name without a port"),
    ("a b", "'a b' is not a host name"),
    ("x..y", "'x..y' is not a host name"),
])
def test_a_bad_pattern_is_named_with_what_is_wrong(entry: str, says: str) -> None:
    with pytest.raises(ValueError) as err:
        check_pattern(entry)
    assert str(err.value).startswith(says)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_front_door_refuses_and_logs_at_most_once_a_second(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Refusals come in floods (a scanner, a rebinding page): one warning a second, with
    the count, the last request's Host values (two at most, 100 characters each), its
    peer and the reason, and where the setting is."""
    from porch import throttle
    from porch.http_server.hosts import FrontDoor

    clock = _Clock()
    monkeypatch.setattr(throttle.time, "monotonic", clock)
    door = FrontDoor(HostAllowList())
    caplog.set_level("WARNING", logger="porch.http_server")
    assert door.check("HTTP/1.1", ["localhost:8080"], "127.0.0.1") is None
    assert door.check("HTTP/1.0", [], "127.0.0.1") is None
    assert caplog.records == [], "a request that may go on is not counted"

    why = "this node does not answer to that host name"
    assert door.check("HTTP/1.1", ["evil.example"], "192.0.2.1") == why
    [first] = caplog.records
    assert first.getMessage() == (
        f"refused 1 request(s) with a bad Host (last: 'evil.example' from 192.0.2.1: {why}); "
        "a name the node should answer to goes in [http_server] allowed_hosts")

    clock.now += 0.5
    assert door.check("HTTP/1.1", [], "192.0.2.2") == "the Host header is missing (HTTP/1.1 requires it)"
    long = "x" * 150
    assert door.check("HTTP/1.1", [long, "b", "c"], "192.0.2.3") == "more than one Host header"
    assert len(caplog.records) == 1, "within the second: counted, not logged"
    clock.now += 0.5
    assert door.check("HTTP/1.1", [long, "b", "c"], "192.0.2.4") == "more than one Host header"
    second = caplog.records[-1].getMessage()
    assert second.startswith(f"refused 3 request(s) with a bad Host (last: '{'x' * 100}', 'b' from "
                             "192.0.2.4: more than one Host header)")
    clock.now += 1
    assert door.check("HTTP/1.1", ["a b"], "192.0.2.5") == "invalid Host header"
    clock.now += 1
    door.check("HTTP/1.1", [], "192.0.2.5")
    assert "(last: none from 192.0.2.5: the Host header is missing" in caplog.records[-1].getMessage()


def test_the_front_door_remembers_verdicts_within_a_bound() -> None:
    """Issue 12: verdicts for single Host values are kept (parsing an IP literal per
    request cost ~2% of the worker), a refused one is still refused (and counted) each
    time, and the memo never holds more than FrontDoor.MEMO values."""
    from porch.http_server.hosts import FrontDoor

    door = FrontDoor(HostAllowList())
    why = "this node does not answer to that host name"
    for _ in range(3):
        assert door.check("HTTP/1.1", ["127.0.0.1:8080"], None) is None
        assert door.check("HTTP/1.1", ["evil.example"], None) == why
        assert door.check("HTTP/1.0", ["evil.example"], None) == why
    for i in range(3 * FrontDoor.MEMO):
        assert door.check("HTTP/1.1", [f"h{i}.example"], None) == why
        assert len(door._memo) <= FrontDoor.MEMO
    assert door.check("HTTP/1.1", ["localhost"], None) is None

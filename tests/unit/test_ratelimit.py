"""The login rate limit: failures only, per client address, forwarded addresses
believed only from trusted proxies (issue 9 item 10)."""

from __future__ import annotations

import pytest

from porch.http_server.ratelimit import RateLimiter, client_address, parse_networks, rate_key

LOCAL = parse_networks(["127.0.0.1", "10.0.0.0/8", "::1"])


def test_failures_count_successes_do_not() -> None:
    rl = RateLimiter(2, 60)
    for t in range(10):  # the owner logging in over and over
        assert rl.begin("a", t) == 0.0
        rl.succeeded("a", t)
    assert rl.begin("a", 20) == 0.0  # a failure (never taken back)
    assert rl.begin("a", 21) == 0.0
    assert rl.begin("a", 22) == pytest.approx(58)
    assert rl.begin("b", 22) == 0.0, "another client is not held"
    assert rl.begin("a", 81) == 0.0, "the window moved on"


def test_concurrent_attempts_cannot_all_slip_under_the_limit() -> None:
    """begin counts the attempt before its (slow) password check finishes."""
    rl = RateLimiter(3, 60)
    assert [rl.begin("a", 0.0) for _ in range(5)] == [0.0, 0.0, 0.0, 60.0, 60.0]


def test_the_purge_never_drops_an_active_clients_failures() -> None:
    """Past max_keys, idle clients are forgotten; a client whose failures still count
    is not, however many addresses come and go."""
    rl = RateLimiter(2, 60)  # the default max_keys: 10 000
    for i in range(9_999):
        rl.begin(f"10.0.{i // 256}.{i % 256}", 0.0)  # idle once t > 60
    rl.begin("victim", 65.0)  # the 10 000th key
    rl.begin("victim", 66.0)
    for i in range(1000):  # new addresses past 10 000 keys: a purge runs
        rl.begin(f"10.1.{i // 256}.{i % 256}", 70.0 + i * 0.01)
    assert len(rl) == 1 + 1000, "the idle clients were forgotten, the victim was not"
    assert rl.begin("victim", 72.0) > 0, "its failures still count"


def test_purge_is_not_run_on_every_attempt() -> None:
    rl = RateLimiter(5, 60, max_keys=10)
    for i in range(50):
        rl.begin(f"k{i}", 0.0)  # all active: nothing to purge
    assert len(rl) == 50


@pytest.mark.parametrize("peer, forwarded, real_ip, expected", [
    ("127.0.0.1", [], None, "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.5"], None, "203.0.113.5"),
    ("127.0.0.1", ["198.51.100.1, 203.0.113.5"], None, "203.0.113.5"),  # right-most: the proxy's
    ("127.0.0.1", ["198.51.100.1", "203.0.113.5, 10.1.2.3"], None, "203.0.113.5"),  # past our proxies
    ("127.0.0.1", ["10.0.0.1, 10.0.0.2"], None, "10.0.0.1"),  # all ours: the left-most
    ("127.0.0.1", ["garbage"], None, "127.0.0.1"),  # unusable: the proxy itself
    ("127.0.0.1", ["203.0.113.5:4711"], None, "203.0.113.5"),
    ("127.0.0.1", ["[2001:db8::1]:4711"], None, "2001:db8::1"),
    ("127.0.0.1", [], "203.0.113.9", "203.0.113.9"),
    ("127.0.0.1", ["203.0.113.5"], "203.0.113.9", "203.0.113.5"),
    ("::ffff:127.0.0.1", ["203.0.113.5"], None, "203.0.113.5"),
    ("198.51.100.7", ["203.0.113.5"], "203.0.113.9", "198.51.100.7"),  # not a trusted peer
    (None, [], None, "?"),
])
def test_client_address(peer: str | None, forwarded: list[str], real_ip: str | None, expected: str) -> None:
    assert client_address(peer, forwarded, real_ip, LOCAL) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_address("127.0.0.1", ["203.0.113.5"], "203.0.113.9", ()) == "127.0.0.1"


def test_rate_key_groups_an_ipv6_host() -> None:
    assert rate_key("2001:db8::1") == rate_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert rate_key("203.0.113.5") == "203.0.113.5"
    assert rate_key("::ffff:203.0.113.5") == "203.0.113.5"
    assert rate_key("?") == "?"


def test_bad_networks_are_named() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        parse_networks(["127.0.0.1", "nope"])


# ---------------------------------------------------------------------- exact rules (issue 16)


def test_the_defaults_are_a_minute_and_10_000_clients() -> None:
    rl = RateLimiter(1)
    assert rl.begin("a", 0.0) == 0.0
    assert rl.begin("a", 59.5) == pytest.approx(0.5), "the wait is what is left of the minute"
    assert rl.begin("a", 60.0) == 0.0, "a failure exactly a minute old no longer counts"
    rl = RateLimiter(1)
    for i in range(10_000):
        rl.begin(f"k{i}", 0.0)
    assert len(rl) == 10_000
    rl.begin("new", 100.0)  # past 10 000 clients: the idle ones are forgotten
    assert len(rl) == 1


def test_without_a_clock_reading_the_limiter_uses_its_own() -> None:
    rl = RateLimiter(1)
    assert rl.begin("a") == 0.0
    assert 59.0 < rl.begin("a") <= 60.0


def test_idle_clients_are_kept_until_max_keys_and_forgotten_at_it() -> None:
    rl = RateLimiter(5, 60, max_keys=10)
    for i in range(9):
        rl.begin(f"k{i}", 0.0)
    rl.begin("k9", 100.0)  # the 10th key: nothing purged yet, however idle the others
    assert len(rl) == 10
    rl.begin("k10", 100.0)  # 10 keys held: the idle ones go
    assert len(rl) == 2


def test_a_client_whose_last_failure_just_left_the_window_is_idle() -> None:
    rl = RateLimiter(5, 60, max_keys=2)
    rl.begin("old", 0.0)
    rl.begin("recent", 0.5)
    rl.begin("new", 60.0)  # "old" failed exactly 60 s ago: it no longer counts
    assert len(rl) == 2
    assert rl.begin("recent", 60.0) == 0.0 and rl._failures["recent"][0] == 0.5


def test_purges_run_at_most_once_a_second() -> None:
    rl = RateLimiter(5, 60, max_keys=10)
    for i in range(10):
        rl.begin(f"idle{i}", 0.0)
    rl.begin("first", 100.0)  # purge at 100
    assert len(rl) == 1

    def fill_idle(tag: str, now: float) -> None:  # keys whose attempt succeeded: idle
        for i in range(10):
            rl.begin(f"{tag}{i}", now)
            rl.succeeded(f"{tag}{i}", now)

    fill_idle("a", 100.2)
    rl.begin("second", 100.5)  # within the second: no purge
    assert len(rl) == 12
    rl.begin("third", 101.0)  # a second later: the idle ones go, the active stay
    assert sorted(rl._failures) == ["first", "second", "third"]


def test_a_network_with_host_bits_set_means_its_network() -> None:
    assert parse_networks(["10.1.2.3/8", " ::1/64 "]) == parse_networks(["10.0.0.0/8", "::/64"])


def test_a_peer_that_is_not_an_address_is_the_client() -> None:
    assert client_address("garbage", ["203.0.113.5"], "203.0.113.9", LOCAL) == "garbage"
    assert client_address("", ["203.0.113.5"], None, LOCAL) == ""


@pytest.mark.parametrize("entry", ["[::1", "[2001:db8::1", "[]"])
def test_a_bracket_left_open_is_garbage(entry: str) -> None:
    trusted = parse_networks(["::/0"])
    assert client_address("::1", [entry], None, trusted) == "::1"


def test_a_bracketed_address_ends_at_its_first_bracket() -> None:
    assert client_address("127.0.0.1", ["[2001:db8::1]:4711]"], None, LOCAL) == "2001:db8::1"

"""Login rate limiting: failed attempts per client address (issue 9 item 10).

Only failures count: the owner logging in again and again never locks anyone out, and
a client guessing passwords is held to `limit` wrong guesses per window. The client is
the TCP peer, unless the peer is one of `[http_server] trusted_proxies`: then it is the
address that proxy reports (X-Forwarded-For's right-most address that is not itself a
trusted proxy, else X-Real-Ip). Without that setting every client behind a same-host
TLS proxy is the proxy's one loopback address, and one guesser would lock out all.
Forwarding headers from a peer that is not trusted are ignored: anyone can write them.

Pure: no I/O, the clock passed in.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """"127.0.0.1", "10.0.0.0/8", "::1"...; ValueError names the first bad entry."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(out)


def _address(text: str) -> Address | None:
    """An address as proxies write it: "1.2.3.4", "1.2.3.4:5678", "::1", "[::1]:5678"."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], real_ip: str | None,
                   trusted: Sequence[Network]) -> str:
    """The address a login attempt counts against. `forwarded_for`: every
    X-Forwarded-For header's value, in order (each may list several, comma-separated)."""
    if peer is None:
        return "?"
    peer_address = _address(peer)
    if not trusted or peer_address is None or not _trusted(peer_address, trusted):
        return peer
    chain = [entry for value in forwarded_for for entry in value.split(",") if entry.strip()]
    if chain:
        # Each proxy appends the address it got the request from: read from the right,
        # past our own proxies, to the first address a trusted proxy vouches for.
        for entry in reversed(chain):
            address = _address(entry)
            if address is None:
                return peer  # garbage where a trusted proxy should have written: ours
            if not _trusted(address, trusted):
                return str(address)
        first = _address(chain[0])
        return str(first) if first is not None else peer  # all of them ours
    if real_ip is not None:
        address = _address(real_ip)
        if address is not None:
            return str(address)
    return peer


def rate_key(address: str) -> str:
    """What one client is: its IPv4 address, or its IPv6 /64 (one host usually holds a
    whole /64, so counting single IPv6 addresses would give it 2^64 buckets)."""
    parsed = _address(address)
    if parsed is None:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class RateLimiter:
    """At most `limit` failures per `window_s` per key.

    `begin` is called before a password is checked and counts the attempt as a failure
    at once, so that concurrent attempts cannot all slip under the limit while their
    (slow) checks run; `succeeded` takes a successful attempt back. Past `max_keys`
    keys, the keys with no failure inside the window are forgotten (at most once a
    second): never one whose failures still count.
    """

    def __init__(self, limit: int, window_s: float = 60.0, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}
        self._next_purge = float("-inf")

    def __len__(self) -> int:
        return len(self._failures)

    def begin(self, key: str, now: float | None = None) -> float:
        """0.0 if `key` may try now (the attempt is counted: call `succeeded(key, now)`
        if it was right), else the seconds until it may."""
        now = time.monotonic() if now is None else now
        failures = self._failures.get(key)
        if failures is None:
            if len(self._failures) >= self.max_keys and now >= self._next_purge:
                self._purge(now)
            failures = self._failures[key] = deque()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if len(failures) >= self.limit:
            return max(failures[0] + self.window_s - now, 0.001)
        failures.append(now)
        return 0.0

    def succeeded(self, key: str, started: float) -> None:
        """The attempt `begin(key, started)` counted was a success: it does not count."""
        failures = self._failures.get(key)
        if failures is not None:
            try:
                failures.remove(started)
            except ValueError:
                pass  # already out of the window

    def _purge(self, now: float) -> None:
        self._next_purge = now + 1.0
        horizon = now - self.window_s
        for key in [k for k, v in self._failures.items() if not v or v[-1] <= horizon]:
            del self._failures[key]

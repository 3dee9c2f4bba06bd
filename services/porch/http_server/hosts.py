"""The Host a request names, and whether an Origin is the node's own (issue 9 items 1,
11 and 8; SECURITY.md "Every request, before anything else").

DNS rebinding: a page on evil.example whose name the attacker re-points at 127.0.0.1
reaches the node from the owner's browser as a *same-origin* page of evil.example. Its
requests carry `Host: evil.example` (the browser sets it; a page cannot), so a node
that answers only to its own names is out of its reach. The names: localhost and
*.localhost, any IP literal (no DNS answer can produce one), the names of
`[http_server] allowed_hosts`, and one label in front of an allowed name (an app's
secure subdomain). The port is not compared. The rules are Django's ALLOWED_HOSTS
(".example.com" = example.com and its subdomains, "*" = any) plus Jupyter Server's
(an IP-literal Host is always accepted).

RFC 9112 section 3.2: an HTTP/1.1 request without a Host, and any request with more
than one Host or an invalid one, is answered 400. An HTTP/1.0 request may have no Host
(the protocol predates it): it is served as if it named localhost.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable

from porch.throttle import Every

log = logging.getLogger("porch.http_server")

# A DNS name (or an IPv4 literal): dot-separated non-empty labels of letters, digits
# and "-". Lower-case here: values are lower-cased first.
_REG_NAME = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")
_ORIGIN = re.compile(r"(https?)://([^/?#@\s]+)")
MAX_NAME = 253


def parse_host(value: str) -> tuple[str, int | None] | None:
    """A Host header value (or an origin's host part) as (name, port or None), or None
    if it is not one. The name is lower-cased without a trailing dot; an IPv6 literal
    keeps its brackets ("[::1]")."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1:]
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
    else:
        name, colon, port_text = value.partition(":")
        rest = colon + port_text
        if name.endswith("."):
            name = name[:-1]
        if len(name) > MAX_NAME or not _REG_NAME.fullmatch(name):
            return None
    port = None
    if rest:
        digits = rest[1:]
        if not rest.startswith(":") or not digits.isascii() or (digits and not digits.isdigit()):
            return None
        if digits:
            port = int(digits)
            if port > 65535:
                return None
    return name, port


def is_ip_literal(name: str) -> bool:
    """"127.0.0.1", "[::1]": a name no DNS answer can stand for."""
    text = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_pattern(entry: str) -> str:
    """An allowed_hosts entry, lower-cased; ValueError says what is wrong with it."""
    pattern = entry.strip().lower()
    if pattern == "*":
        return pattern
    prefix = "*." if pattern.startswith("*.") else "." if pattern.startswith(".") else ""
    name = pattern[len(prefix):]
    if name.endswith("."):
        name = name[:-1]
    if ":" in name:
        raise ValueError(f"{entry!r}: write the name without a port (ports are not compared)")
    if len(name) > MAX_NAME or not _REG_NAME.fullmatch(name):
        raise ValueError(f"{entry!r} is not a host name (nor *.name, .name or *)")
    return prefix + name


class HostAllowList:
    """The names the node answers to (see the module docstring)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.any = False
        self.exact = {"localhost"}
        suffixes = [".localhost"]
        for entry in entries:
            pattern = check_pattern(entry)
            if pattern == "*":
                self.any = True
            elif pattern.startswith("*."):
                suffixes.append(pattern[1:])
            elif pattern.startswith("."):
                suffixes.append(pattern)
                self.exact.add(pattern[1:])
            else:
                self.exact.add(pattern)
        self.suffixes = tuple(suffixes)

    def allows(self, name: str) -> bool:
        """`name` as parse_host returns it (lower-case, no port)."""
        if self.any or name in self.exact or name.endswith(self.suffixes) or is_ip_literal(name):
            return True
        _label, dot, parent = name.partition(".")
        return bool(dot) and parent in self.exact  # <secure subdomain>.<allowed name>


def host_problem(version: str, hosts: list[str], allowed: HostAllowList) -> str | None:
    """Why a request with these Host values (every one it carries) is answered 400,
    or None if it may go on."""
    if len(hosts) > 1:
        return "more than one Host header"
    if not hosts:
        return None if version == "HTTP/1.0" else "the Host header is missing (HTTP/1.1 requires it)"
    parsed = parse_host(hosts[0])
    if parsed is None:
        return "invalid Host header"
    if not allowed.allows(parsed[0]):
        return "this node does not answer to that host name"
    return None


class FrontDoor:
    """The Host check every request passes before anything else looks at it (HTTP
    and WebSocket upgrades alike); refusals are logged at most once a second."""

    MEMO = 1024  # verdicts kept for single Host values (the same few come every request)

    def __init__(self, allowed: HostAllowList) -> None:
        self.allowed = allowed
        self._refused = Every()
        # (version, Host) -> verdict: parsing an IP literal's Host was ~2% of the
        # worker's CPU per request (issue 12). Emptied when full: clients choose Hosts.
        self._memo: dict[tuple[str, str], str | None] = {}

    def check(self, version: str, hosts: list[str], peer: str | None) -> str | None:
        if len(hosts) == 1:
            key = (version, hosts[0])
            try:
                problem = self._memo[key]
            except KeyError:
                problem = host_problem(version, hosts, self.allowed)
                if len(self._memo) >= self.MEMO:
                    self._memo.clear()
                self._memo[key] = problem
        else:
            problem = host_problem(version, hosts, self.allowed)
        if problem is not None:
            count = self._refused.due()
            if count:
                shown = ", ".join(repr(h[:100]) for h in hosts[:2]) or "none"
                log.warning("refused %d request(s) with a bad Host (last: %s from %s: %s); a name "
                            "the node should answer to goes in [http_server] allowed_hosts",
                            count, shown, peer, problem)
        return problem


def same_origin(origin: str, host: str) -> bool:
    """Whether a browser's Origin ("http://name:port") names the host:port the request
    was sent to (its Host). Scheme-agnostic (a TLS proxy in front changes the scheme,
    not the name): an origin without a port has its scheme's default port, and so
    does a Host without one. "null" and anything else malformed is not the same."""
    m = _ORIGIN.fullmatch(origin.strip().lower())
    if m is None:
        return False
    scheme, netloc = m.groups()
    theirs, ours = parse_host(netloc), parse_host(host)
    if theirs is None or ours is None:
        return False
    default = 443 if scheme == "https" else 80
    return theirs[0] == ours[0] and (theirs[1] or default) == (ours[1] or default)

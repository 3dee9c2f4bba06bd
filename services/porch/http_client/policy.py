"""Which hosts and addresses the node may reach: allow/deny lists of names and CIDR ranges.

A node that runs untrusted processes must be able to keep them off its own network
(the cloud metadata address, the admin interface on localhost, the office LAN). Names
alone cannot do that (any name can resolve to 10.0.0.1), so the rules on networks are
checked against the addresses a name resolves to, at connect time, and the connection
is then made to exactly the address that was checked.

Rules, in order:
1. a host matching `deny_hosts`, or any address in a denied network, is refused (an
   IPv6 address that carries an IPv4 address, for NAT64, 6to4 or Teredo, is checked as
   both: `embedded_ipv4`);
2. if `allow_hosts` or `allow_networks` is non-empty, only a host matching `allow_hosts`,
   or one whose every address is in `allow_networks`, is allowed;
3. otherwise everything is allowed (the default, as in Kinode).

Pure: no sockets, no DNS. `check` is called once with the URL's host before anything
is sent (addresses unknown unless the host is a literal), and again with the resolved
addresses when a connection is made.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# What `deny_private = true` adds to deny_networks: every range that is not the public
# internet (IANA special-purpose registries), IPv4 and IPv6.
PRIVATE_NETWORKS: tuple[str, ...] = (
    "0.0.0.0/8",        # "this network"
    "10.0.0.0/8",       # RFC 1918
    "100.64.0.0/10",    # carrier-grade NAT
    "127.0.0.0/8",      # loopback
    "169.254.0.0/16",   # link-local (cloud metadata at 169.254.169.254)
    "172.16.0.0/12",    # RFC 1918
    "192.0.0.0/24",     # IETF protocol assignments
    "192.168.0.0/16",   # RFC 1918
    "198.18.0.0/15",    # benchmarking
    "224.0.0.0/4",      # multicast
    "240.0.0.0/4",      # reserved, and 255.255.255.255
    "::/96",            # unspecified (::), loopback (::1), IPv4-compatible (deprecated)
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT); IPv4-mapped addresses (::ffff:0:0/96)
                        # are checked as the IPv4 address they are (parse_address)
    "64:ff9b:1::/48",   # local-use NAT64 (RFC 8215): IPv4 hosts behind a gateway of the site
    "fc00::/7",         # unique local
    "fe80::/10",        # link-local
    "ff00::/8",         # multicast
)


# IPv6 addresses that carry an IPv4 address the network takes the packets to: a denied
# IPv4 range is denied in these forms too (64:ff9b::a00:1 is 10.0.0.1 behind a NAT64
# gateway). Not the whole ranges: on an IPv6-only network with DNS64, every IPv4-only
# site has a 64:ff9b:: address.
_LOW_32_BITS = (
    ipaddress.IPv6Network("64:ff9b::/96"),      # NAT64's well-known prefix (RFC 6052)
    ipaddress.IPv6Network("::/96"),             # IPv4-compatible (RFC 4291, deprecated)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),   # IPv4-translated (RFC 2765, SIIT)
)


class PolicyError(ValueError):
    """A host pattern or network in the settings that cannot be used."""


def normalize_host(host: str) -> str:
    """Lower-case, no trailing dot, no IPv6 brackets, IDNA (punycode) for non-ASCII."""
    h = host.strip().lower().rstrip(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if not h.isascii():
        try:
            h = h.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # left as is; it will match nothing but an identical pattern
    return h


def parse_address(text: str) -> IPAddress | None:
    """The address if `text` is an IP literal (IPv4-mapped IPv6 unwrapped), else None."""
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def embedded_ipv4(addr: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries, where a packet to it goes through or
    ends: the last 32 bits of NAT64's well-known prefix and of the IPv4-compatible and
    -translated forms, the tunnel end of 6to4 (2002::/16, RFC 3056), the server and the
    client of Teredo (2001::/32, RFC 4380). A NAT64 prefix of the site's own (local-use
    64:ff9b:1::/48, or any network-specific one) puts the address where the operator
    chose: deny that prefix itself."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return ()
    out = []
    if any(addr in net for net in _LOW_32_BITS):
        out.append(ipaddress.IPv4Address(int(addr) & 0xFFFF_FFFF))
    if addr.sixtofour is not None:
        out.append(addr.sixtofour)
    if addr.teredo is not None:
        out.extend(addr.teredo)
    return tuple(out)


class HostPatterns:
    """Exact names and "*.suffix" wildcards (any depth of subdomain, not the apex)."""

    def __init__(self, patterns: Iterable[str], setting: str) -> None:
        self.exact: set[str] = set()
        self.suffixes: list[str] = []
        for raw in patterns:
            if raw.startswith("*."):
                suffix = normalize_host(raw[2:])
                if not suffix or "*" in suffix:
                    raise PolicyError(f"{setting}: bad pattern {raw!r} (use 'name' or '*.name')")
                self.suffixes.append("." + suffix)
            else:
                name = normalize_host(raw)
                if not name or "*" in name or "/" in name:
                    raise PolicyError(f"{setting}: bad host {raw!r} (use 'name' or '*.name'; "
                                      "networks go in the *_networks settings)")
                self.exact.add(name)

    def __bool__(self) -> bool:
        return bool(self.exact or self.suffixes)

    def match(self, host: str) -> str | None:
        """The pattern that matches the normalized host, or None."""
        if host in self.exact:
            return host
        for suffix in self.suffixes:
            if host.endswith(suffix):
                return "*" + suffix
        return None


def _networks(entries: Iterable[str], setting: str) -> list[IPNetwork]:
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise PolicyError(f"{setting}: {entry!r} is not a CIDR range like '10.0.0.0/8'") from None
    return out


class OutgoingPolicy:
    def __init__(
        self,
        *,
        allow_hosts: Iterable[str] = (),
        deny_hosts: Iterable[str] = (),
        allow_networks: Iterable[str] = (),
        deny_networks: Iterable[str] = (),
        deny_private: bool = False,
    ) -> None:
        self.allow_hosts = HostPatterns(allow_hosts, "allow_hosts")
        self.deny_hosts = HostPatterns(deny_hosts, "deny_hosts")
        self.allow_networks = _networks(allow_networks, "allow_networks")
        self.deny_networks = _networks(
            [*deny_networks, *(PRIVATE_NETWORKS if deny_private else ())], "deny_networks")

    @property
    def allow_list_mode(self) -> bool:
        return bool(self.allow_hosts or self.allow_networks)

    @property
    def needs_addresses(self) -> bool:
        """Whether a name must be resolved and its addresses checked before connecting."""
        return bool(self.deny_networks or self.allow_networks)

    @property
    def allows_everything(self) -> bool:
        return not (self.allow_list_mode or self.deny_hosts or self.deny_networks)

    def check(self, host: str, addresses: Sequence[str] | None = None, *,
              final: bool = False) -> str | None:
        """None if `host` may be reached, else why not (for logs and the Denied error).

        `addresses`: what the host resolved to; None before resolution, when only what
        the name (or a literal address) says can be decided. `final`: no resolution will
        follow (a request through a proxy), so what only addresses could allow is refused.
        """
        if self.allows_everything:
            return None
        name = normalize_host(host)
        hit = self.deny_hosts.match(name)
        if hit is not None:
            return f"host {name} matches deny_hosts entry {hit!r}"
        literal = parse_address(name)
        addrs: list[IPAddress] | None
        if literal is not None:
            addrs = [literal]
        elif addresses is not None:
            addrs = [a for a in (parse_address(t) for t in addresses) if a is not None]
            if not addrs:
                return f"host {name} resolved to no usable address"
        else:
            addrs = None
        if addrs is not None:
            for addr in addrs:
                for seen in (addr, *embedded_ipv4(addr)):
                    for net in self.deny_networks:
                        if seen.version == net.version and seen in net:
                            carries = f" (it carries {seen})" if seen is not addr else ""
                            return f"address {addr} of {name}{carries} is in denied network {net}"
        if not self.allow_list_mode or self.allow_hosts.match(name) is not None:
            return None
        if addrs is None:
            # Only the addresses can still allow it; undecided until resolution.
            if self.allow_networks and not final:
                return None
            return f"host {name} is not in allow_hosts"
        if self.allow_networks and all(
            any(a.version == n.version and a in n for n in self.allow_networks) for a in addrs
        ):
            return None
        return f"host {name} ({', '.join(map(str, addrs))}) is not in allow_hosts or allow_networks"

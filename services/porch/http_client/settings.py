"""The `[http_client]` table of porch.toml, validated into one frozen object.

Every limit the service enforces is here with its default and unit, so an operator can
read this file (or the README table generated from it) to know what the node allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from porch.http_client.policy import OutgoingPolicy, PolicyError
from porch.node.config import ConfigError, settings_from

MIB = 1024 * 1024


@dataclass(frozen=True)
class HttpClientSettings:
    # Largest response body accepted, in bytes; past it the caller gets ResponseTooLarge.
    # (Kinode has no cap.) A body of 1 MiB or more is written into a memfd as it arrives
    # and handed to the caller as a descriptor: it never travels through the kernel.
    max_response_bytes: int = 64 * MIB
    # Bytes of response bodies held at once, every request together (read and not yet
    # handed to their callers). A body whose next piece would pass it fails with
    # ExecuteRequestFailed ("http-client busy"): the node's memory does not grow with the
    # number of large downloads. At least max_response_bytes, so one body always fits;
    # 0 = four times max_response_bytes (256 MiB with the defaults).
    max_inflight_bytes: int = 0
    # Redirects followed per request (reqwest's default, so Kinode's); one more fails the
    # request with ExecuteRequestFailed. 0 returns redirects to the caller as answers.
    max_redirects: int = 10
    # Seconds a request may take when its caller gave no deadline (sent without
    # expects_response). With a deadline, the caller's deadline is used instead.
    default_timeout_s: float = 30.0
    # Threads running outgoing HTTP requests. A request holds one thread until it is
    # answered or abandoned at its deadline, so this many slow remotes at once make new
    # requests wait in a queue (they are dropped unanswered if their deadline passes there).
    workers: int = 32
    # Requests accepted while every worker is busy, waiting for one. Past this many the
    # new request fails at once with ExecuteRequestFailed ("http-client busy") instead of
    # piling up in memory (each waiting request holds its body). Kinode has no bound.
    max_waiting_requests: int = 1024
    # Outgoing policy (see README "Outgoing policy"). Hosts: "example.com" (exact) or
    # "*.example.com" (any subdomain). Networks: CIDR ranges such as "10.0.0.0/8".
    # Empty allow lists allow everything; a non-empty one allows only what it names.
    # Deny entries win over allow entries. Names are resolved once and the connection is
    # made to the checked address (no DNS-rebinding gap).
    allow_hosts: tuple[str, ...] = ()
    deny_hosts: tuple[str, ...] = ()
    allow_networks: tuple[str, ...] = ()
    deny_networks: tuple[str, ...] = ()
    # Shorthand: add loopback, RFC 1918, link-local, CGNAT, ULA and other non-public
    # ranges (porch.http_client.policy.PRIVATE_NETWORKS) to deny_networks.
    deny_private: bool = False
    # Honour HTTP_PROXY / HTTPS_PROXY / NO_PROXY from the environment, as Kinode (reqwest)
    # does. Network rules cannot see the address a proxy connects to: only host rules and
    # literal addresses are checked for proxied requests.
    env_proxies: bool = True
    # Outgoing WebSocket connections open at once (handshakes included), all processes
    # together; past it WebSocketOpen fails with WsOpenFailed.
    max_ws_connections: int = 256
    # Largest incoming WebSocket message, in bytes; a bigger one closes the connection
    # (code 1009) and the opener gets WebSocketClose.
    ws_max_message_bytes: int = 10 * MIB
    # Bytes written to one outgoing WebSocket that its remote has not taken yet. A push
    # that would take the queue past this closes the connection (code 1008): the opener
    # gets WebSocketClose and the push ExecuteRequestFailed, and the process's other
    # connections are untouched. A remote that stops reading therefore holds at most this
    # (plus one message: a push larger than the cap still goes out when nothing waits).
    ws_send_queue_bytes: int = 4 * MIB

    def __post_init__(self) -> None:
        for name in ("max_response_bytes", "workers", "max_waiting_requests", "max_ws_connections",
                     "ws_max_message_bytes", "ws_send_queue_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[http_client] {name} must be at least 1")
        if self.max_inflight_bytes and self.max_inflight_bytes < self.max_response_bytes:
            raise ConfigError("[http_client] max_inflight_bytes must be 0 (four times "
                              "max_response_bytes) or at least max_response_bytes")
        if self.max_redirects < 0:
            raise ConfigError("[http_client] max_redirects must be 0 or more")
        if not self.default_timeout_s > 0:
            raise ConfigError("[http_client] default_timeout_s must be more than 0")
        try:
            self.policy()
        except PolicyError as exc:
            raise ConfigError(f"[http_client] {exc}") from None

    @property
    def inflight_limit(self) -> int:
        return self.max_inflight_bytes or 4 * self.max_response_bytes

    def policy(self) -> OutgoingPolicy:
        return OutgoingPolicy(
            allow_hosts=self.allow_hosts,
            deny_hosts=self.deny_hosts,
            allow_networks=self.allow_networks,
            deny_networks=self.deny_networks,
            deny_private=self.deny_private,
        )


def load_settings(section: dict[str, Any], where: str = "porch.toml [http_client]") -> HttpClientSettings:
    return settings_from(section, HttpClientSettings, where)

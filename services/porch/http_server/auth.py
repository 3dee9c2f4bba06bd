"""Login and auth: password check, JWT cookies, rate limits (reference section 4).

Pure logic; the secrets come from `state.NodeSecrets`. Differences from Kinode, on
purpose (DESIGN.md "Auth"): the password is checked against an argon2id hash (Kinode
decrypts a keyfile), the cookie carries real attributes (HttpOnly, SameSite, Path,
Max-Age, Secure behind https), and a wrong password answers 401, not 500.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass

import argon2
import jwt

_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
PROXY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-Ip", "Forwarded")
_MAX_VERIFIED = 4096


def cookie_name(node: str, subdomain_app: str | None = None) -> str:
    """kinode-auth_<node>, or kinode-auth_<node>@<app process id> for a secure app."""
    return f"kinode-auth_{node}" + (f"@{subdomain_app}" if subdomain_app else "")


def find_cookie(header: str | None, name: str) -> str | None:
    """Kinode's parser (reference 4.4): entries split on exactly "; ", the first entry
    "name=value" with exactly two parts and that name wins."""
    if not header:
        return None
    for entry in header.split("; "):
        parts = entry.split("=")
        if len(parts) == 2 and parts[0] == name:
            return parts[1]
    return None


class Auth:
    def __init__(self, node: str, jwt_secret: bytes, password_hash: str,
                 session_days: float = 30.0, https: bool = False) -> None:
        self.node = node
        self._secret = jwt_secret
        self._hash = password_hash
        self._hasher = argon2.PasswordHasher()
        self.session_s = int(session_days * 86400)
        self.https = https
        self._verified: dict[tuple[str, str | None], float] = {}

    def check_password(self, password: str) -> bool:
        """Slow on purpose (argon2id, ~0.1 s): run it off the event loop."""
        try:
            return bool(self._hasher.verify(self._hash, password))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def issue(self, subdomain_app: str | None = None, now: float | None = None) -> str:
        now = time.time() if now is None else now
        expiration = int(now) + self.session_s
        claims = {"username": self.node, "subdomain": subdomain_app or None,
                  "expiration": expiration, "exp": expiration}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def valid(self, token: str | None, subdomain_app: str | None = None) -> bool:
        """A token of this node, for this (secure) app or for none, not expired."""
        if not token or not _TOKEN.fullmatch(token):
            return False
        now = time.time()
        key = (token, subdomain_app)
        until = self._verified.get(key)
        if until is not None:
            return until > now
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            return False
        expiration = claims.get("expiration")
        ok = (
            claims.get("username") == self.node
            and claims.get("subdomain") == (subdomain_app or None)
            and isinstance(expiration, int)
            and expiration > now
        )
        if ok:
            if len(self._verified) >= _MAX_VERIFIED:
                self._verified.clear()
            self._verified[key] = float(claims["expiration"])
        return bool(ok)

    def authorized(self, cookie_header: str | None, subdomain_app: str | None = None) -> bool:
        return self.valid(find_cookie(cookie_header, cookie_name(self.node, subdomain_app)),
                          subdomain_app)

    def set_cookie(self, token: str, subdomain_app: str | None = None) -> str:
        attrs = f"; Path=/; Max-Age={self.session_s}; HttpOnly; SameSite=Lax"
        return f"{cookie_name(self.node, subdomain_app)}={token}{attrs}" + ("; Secure" if self.https else "")

    def clear_cookie(self, subdomain_app: str | None = None) -> str:
        attrs = "; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        return f"{cookie_name(self.node, subdomain_app)}={attrs}" + ("; Secure" if self.https else "")


def safe_redirect(target: str | None) -> str | None:
    """Only same-origin absolute paths: "/x?y" yes; "//evil", "http://evil", "\\evil" no."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 0x20 for c in target):
        return None
    return target


def wants_html(accept: str | None) -> bool:
    """A browser navigating (gets the login page) rather than an API client (gets 401)."""
    return bool(accept) and "text/html" in accept  # type: ignore[operator]


def is_local(peer_ip: str | None, has_proxy_headers: bool) -> bool:
    """local_only: a loopback peer that is not a proxy forwarding someone else."""
    if has_proxy_headers or not peer_ip:
        return False
    return peer_ip.startswith("127.") or peer_ip == "::1"


@dataclass
class RateLimiter:
    """At most `limit` events per `window_s` per key (login attempts per client)."""

    limit: int
    window_s: float = 60.0

    def __post_init__(self) -> None:
        self._events: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float | None = None) -> tuple[bool, float]:
        """(allowed, seconds until the next attempt would be allowed)."""
        now = time.monotonic() if now is None else now
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window_s:
            events.popleft()
        if len(events) >= self.limit:
            return False, events[0] + self.window_s - now
        events.append(now)
        if len(self._events) > 10_000:  # forget idle clients
            for k in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window_s]:
                del self._events[k]
        return True, 0.0

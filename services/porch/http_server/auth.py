"""Login and auth: password, JWT cookies and sessions, redirects, cross-site requests
(docs/kinode.md §4).

The secrets come from `state.NodeSecrets`, the sessions from `sessions.Sessions`.
Differences from Kinode, on purpose: the password is checked against an argon2id hash
(Kinode decrypts a keyfile), the cookie carries real attributes (HttpOnly, SameSite,
Path, Max-Age, Secure behind https), a wrong password answers 401, not 500, and a token
is honoured only while the server-side session it names is live (logout ends it;
Kinode's tokens stay valid until they expire).
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote, unquote

import argon2
import jwt

from porch.http_server.hosts import same_origin
from porch.http_server.sessions import Sessions

_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
PROXY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-Ip", "Forwarded")
_MAX_VERIFIED = 4096


def cookie_name(node: str, subdomain_app: str | None = None) -> str:
    """kinode-auth_<node>, or kinode-auth_<node>@<app process id> for a secure app."""
    return f"kinode-auth_{node}" + (f"@{subdomain_app}" if subdomain_app else "")


def find_cookie(header: str | None, name: str) -> str | None:
    """Kinode's parser (docs/kinode.md §4.4): entries split on exactly "; ", the first entry
    "name=value" with exactly two parts and that name wins."""
    if not header:
        return None
    for entry in header.split("; "):
        parts = entry.split("=")
        if len(parts) == 2 and parts[0] == name:
            return parts[1]
    return None


class Auth:
    """Password check and the cookies' tokens. A token is honoured only while the
    server-side session it names (`sid`) is live (`sessions`): logout ends it."""

    def __init__(self, node: str, jwt_secret: bytes, password_hash: str, *, sessions: Sessions,
                 session_days: float = 30.0, https: bool = False) -> None:
        self.node = node
        self._secret = jwt_secret
        self._hash = password_hash
        self._hasher = argon2.PasswordHasher()
        self.sessions = sessions
        self.session_s = int(session_days * 86400)
        self.https = https
        # Signature and claims checked once per token: (token, app) -> (expiry, sid).
        self._verified: dict[tuple[str, str | None], tuple[int, str]] = {}

    def check_password(self, password: str) -> bool:
        """Slow on purpose (argon2id, ~0.1 s): run it off the event loop."""
        try:
            return bool(self._hasher.verify(self._hash, password))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def issue(self, subdomain_app: str | None = None, now: float | None = None) -> str:
        """A token for a new session (raises sqlite3.Error if it cannot be recorded)."""
        now = time.time() if now is None else now
        expiration = int(now) + self.session_s
        sid = self.sessions.create(subdomain_app or None, expiration, now)
        claims = {"username": self.node, "subdomain": subdomain_app or None,
                  "expiration": expiration, "exp": expiration, "sid": sid}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def session_of(self, token: str | None, subdomain_app: str | None = None) -> str | None:
        """The live session a token of this node, for this (secure) app or for none,
        names; None if it names none (bad, expired, logged out, or from before sessions)."""
        if not token or not _TOKEN.fullmatch(token):
            return None
        now = time.time()
        key = (token, subdomain_app)
        known = self._verified.get(key)
        if known is None:
            try:
                claims = jwt.decode(token, self._secret, algorithms=["HS256"])
            except jwt.PyJWTError:
                return None
            expiration, sid = claims.get("expiration"), claims.get("sid")
            if not (claims.get("username") == self.node
                    and claims.get("subdomain") == (subdomain_app or None)
                    and isinstance(expiration, int) and isinstance(sid, str) and sid):
                return None
            if len(self._verified) >= _MAX_VERIFIED:
                self._verified.clear()
            known = self._verified[key] = (expiration, sid)
        expiration, sid = known
        if expiration <= now or not self.sessions.is_live(sid, now):
            return None
        return sid

    def valid(self, token: str | None, subdomain_app: str | None = None) -> bool:
        return self.session_of(token, subdomain_app) is not None

    def revoke(self, token: str | None, subdomain_app: str | None = None) -> bool:
        """End the session a token names (logout); whether there was one."""
        sid = self.session_of(token, subdomain_app)
        if sid is None:
            return False
        self.sessions.revoke(sid)
        return True

    def authorized(self, cookie_header: str | None, subdomain_app: str | None = None) -> bool:
        return self.valid(find_cookie(cookie_header, cookie_name(self.node, subdomain_app)),
                          subdomain_app)

    def set_cookie(self, token: str, subdomain_app: str | None = None) -> str:
        attrs = f"; Path=/; Max-Age={self.session_s}; HttpOnly; SameSite=Lax"
        return f"{cookie_name(self.node, subdomain_app)}={token}{attrs}" + ("; Secure" if self.https else "")

    def clear_cookie(self, subdomain_app: str | None = None) -> str:
        attrs = "; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        return f"{cookie_name(self.node, subdomain_app)}={attrs}" + ("; Secure" if self.https else "")


# Printable ASCII but space: what a Location may carry as it is ("%" included, so the
# escapes already in a target stay as they are). Anything else is percent-encoded.
_LOCATION_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def safe_redirect(target: str | None) -> str | None:
    """`target` as a Location that stays on this origin, or None if it cannot be one.

    Every redirect porch makes to a target that came from a request (the login page's
    hidden field and form action, ?redirect=, the login body's redirect, the 303 after
    login, the secure-subdomain 307's path) goes through here (issue 9 item 3).
    Browsers resolve a Location as a URL reference: "//evil" and "/\\evil" (a backslash
    counts as "/") name another host, and tab, CR and LF are dropped before parsing
    ("/<tab>/evil" is "//evil"). So: an absolute path whose second character is neither
    "/" nor "\\", with no backslash and no control character anywhere, and none of that
    once percent-decoded either ("/%2F%2Fevil": harmless to a browser, but a proxy or
    an app that decodes it once would see "//evil"). What is left but not printable
    ASCII (spaces, non-ASCII) is percent-encoded as UTF-8, so the header can always be
    written (a non-Latin-1 Location used to fail after the answer was started: a hang).
    """
    if not target or not target.startswith("/"):
        return None
    if "\\" in target or any(c < " " or c == "\x7f" for c in target):
        return None
    decoded = unquote(target, errors="surrogateescape")
    squeezed = decoded.replace("\t", "").replace("\n", "").replace("\r", "")
    if target[1:2] == "/" or squeezed[1:2] in ("/", "\\"):
        return None
    try:
        return quote(target, safe=_LOCATION_SAFE)
    except UnicodeEncodeError:  # a lone surrogate (from a JSON "\ud800")
        return None


def request_target(path: str, query: str) -> str:
    """The request's own path and query as a redirect target: the bytes the client sent
    (the server reads the request line as Latin-1), non-ASCII percent-encoded."""
    target = path + ("?" + query if query else "")
    try:
        raw = target.encode("latin-1")
    except UnicodeEncodeError:
        raw = target.encode("utf-8", "surrogatepass")
    return quote(raw, safe=_LOCATION_SAFE)


def subdomain_location(scheme: str, subdomain: str, host: str, target: str) -> str | None:
    """The absolute URL of `target` on a secure subdomain of `host`, or None if the Host
    header is not a host[:port] (e.g. "localhost@evil.example") or the target is not a
    safe path (see safe_redirect)."""
    path = safe_redirect(target)
    if path is None or scheme not in ("http", "https") or not _HOST.fullmatch(host):
        return None
    return f"{scheme}://{subdomain}.{host}{path}"


def cross_site(origin: str | None, fetch_site: str | None, host: str | None) -> bool:
    """A state-changing request that a page of another site (or of an app's secure
    subdomain) made the browser send: Sec-Fetch-Site other than same-origin or none
    (the user's own navigation), or an Origin that is not this request's own
    scheme://Host. Clients that send neither (curl, scripts) are not browsers acting
    for someone else."""
    if fetch_site is not None and fetch_site.strip().lower() not in ("same-origin", "none"):
        return True
    if origin is None:
        return False
    # "null" (sandboxed pages, some redirects) and garbage are not the same origin.
    return not host or not same_origin(origin, host)


def strip_auth_cookies(header: str, node: str, app: str | None) -> str | None:
    """A Cookie header as forwarded to `app`: without the node's login cookie, and
    without the secure-subdomain cookies of other apps (issue 9 item 7): a process sees
    only what is its own. Other cookies are kept, in order; a header left with none is
    dropped (None). Names compare case-insensitively and entries split on ";" whatever
    the spacing, so no spelling an app's own cookie parser accepts slips through."""
    main = cookie_name(node).lower()
    lowered = header.lower()
    if main not in lowered:
        return header
    own = cookie_name(node, app).lower() if app else None
    kept = []
    removed = False
    for entry in header.split(";"):
        name = entry.split("=", 1)[0].strip().lower()
        if name == main or (name.startswith(main + "@") and name != own):
            removed = True
            continue
        if entry.strip():
            kept.append(entry.strip())
    if not removed:
        return header
    return "; ".join(kept) if kept else None


def wants_html(accept: str | None) -> bool:
    """A browser navigating (gets the login page) rather than an API client (gets 401)."""
    return bool(accept) and "text/html" in accept  # type: ignore[operator]


def is_local(peer_ip: str | None, has_proxy_headers: bool) -> bool:
    """local_only: a loopback peer that is not a proxy forwarding someone else."""
    if has_proxy_headers or not peer_ip:
        return False
    return peer_ip.startswith("127.") or peer_ip == "::1"

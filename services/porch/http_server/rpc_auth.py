"""Who may use the RPC endpoint (issue 9 item 1; SECURITY.md "RPC").

A loopback peer is not a credential: the owner's browser is one, and so is every page
it visits. A request reaches the RPC endpoint only if

1. it does not come from a browser page of another origin: no `Origin` but the node's
   own, no `Sec-Fetch-Site` but `none`/`same-origin` (403), and its Content-Type is
   `application/json` (415), which no cross-site page can send without a CORS
   preflight that porch never grants;
2. it carries a credential: `Authorization: Bearer <the node's RPC token>` (a random
   secret in `state/rpc.token`, 0600, that `porch rpc-token` prints), or the owner's
   login cookie together with the header `X-Porch-RPC` (a custom header: a page can
   only add one after a preflight, which porch never grants). Else 401.

Jupyter Server guards its API the same way (a token, or a cookie plus an XSRF check,
and a Host check).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from porch.files import temp_beside
from porch.http_server.exchange import TEXT, Headers
from porch.http_server.hosts import same_origin

log = logging.getLogger("porch.http_server")

RPC_HEADER = "X-Porch-RPC"
TOKEN_FILE = "rpc.token"
_MIN_TOKEN = 32  # characters; a generated token has 43


class RpcToken:
    """The node-local RPC token, `<state>/rpc.token` (0600), made at first need; with
    another `name`, another token of the same kind (the scrape's, metrics.token)."""

    def __init__(self, state_dir: Path, name: str = TOKEN_FILE) -> None:
        self.path = state_dir / name

    def get(self) -> str:
        """The token; created if there is none. Two processes creating it at once end
        with the same one: the file is linked into place only where none exists. A
        file too short to be a token is replaced."""
        token = self._read()
        if token is not None and len(token) >= _MIN_TOKEN:
            return token
        fresh = secrets.token_urlsafe(32)
        with temp_beside(self.path) as (fd, tmp):
            os.write(fd, (fresh + "\n").encode())
            os.fsync(fd)
            if token is None:
                try:
                    os.link(tmp, self.path)
                except FileExistsError:  # someone else made it meanwhile: theirs counts
                    pass
            else:
                log.warning("%s holds no usable token; replacing it", self.path)
                os.replace(tmp, self.path)
        token = self._read()
        if token is None:
            raise OSError(f"cannot read {self.path} just written")
        return token

    def _read(self) -> str | None:
        try:
            return self.path.read_text().strip()
        except FileNotFoundError:
            return None


def token_matches(presented: str, token: str) -> bool:
    """Constant-time comparison (no timing oracle on how much of the token is right)."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), token.encode())


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


Refusal = tuple[int, Headers, bytes]


def _refuse(status: int, message: str, *extra: tuple[str, str]) -> Refusal:
    return status, [TEXT, *extra], (message + "\n").encode()


def rpc_refusal(method: str, header: Callable[[str], str | None], token: str,
                logged_in: Callable[[], bool]) -> Refusal | None:
    """Why this request may not use the RPC endpoint (status, headers, body), or None
    if it may. `header(name)`: the request's last value of a header; `logged_in()`:
    whether it carries the owner's login cookie."""
    if method != "POST":
        return _refuse(405, "the RPC endpoint takes POST", ("Allow", "POST"))
    origin = header("Origin")
    host = header("Host") or "localhost"
    if origin is not None and not same_origin(origin, host):
        return _refuse(403, "cross-origin requests to the RPC endpoint are refused")
    fetch_site = header("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.strip().lower() not in ("none", "same-origin"):
        return _refuse(403, "cross-site requests to the RPC endpoint are refused")
    media = (header("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        return _refuse(415, "the RPC endpoint takes Content-Type: application/json")
    presented = bearer(header("Authorization"))
    if presented is not None:
        if token_matches(presented, token):
            return None
        return _refuse(401, "wrong RPC token (`porch rpc-token` prints the node's)",
                       ("WWW-Authenticate", 'Bearer realm="porch"'))
    if header(RPC_HEADER) is not None and logged_in():
        return None
    return _refuse(401, "the RPC endpoint needs Authorization: Bearer <token> (`porch rpc-token` "
                   f"prints it), or the owner's login cookie with an {RPC_HEADER} header",
                   ("WWW-Authenticate", 'Bearer realm="porch"'))

"""The WebSocket opening handshake (RFC 6455 4.2).

The request head arrives like any other (`porch.http_server.listener`). An upgrade is
first checked as a handshake (`handshake_refusal`: GET, HTTP/1.1, `Connection:
upgrade`, version 13, a 16-byte key), then by the WebSocket hub (binding, login,
origin, the owner running). A refusal is an ordinary HTTP answer on the kept-alive
connection; an admitted upgrade's socket is handed to the hub with the bytes the
client sent after its head, and the 101 and every frame after it are the hub's
(`porch.ws.conn`).
"""

from __future__ import annotations

from typing import Any

from porch.http_server.exchange import DATE, OWN_HEADERS, TEXT, Headers
from porch.ws.deflate import MAX_OFFERS
from porch.ws.frames import accept_key, valid_key

Refusal = tuple[int, Headers, bytes]


def _text(status: int, message: str, *extra: tuple[str, str]) -> Refusal:
    return status, [TEXT, *extra], (message + "\n").encode()


def handshake_refusal(method: str, version: str, header: Any) -> Refusal | None:
    """Why this is not a WebSocket opening handshake a server can accept, as the
    answer to give; None if it is one. `header(name)` is the last value of a header."""
    if method != "GET":
        return _text(405, "a WebSocket is opened with GET", ("Allow", "GET"))
    if version != "HTTP/1.1":
        return _text(400, "a WebSocket is opened over HTTP/1.1")
    tokens = {t.strip().lower() for t in (header("Connection") or "").split(",")}
    if "upgrade" not in tokens:
        return _text(400, '"Connection" must include "Upgrade"')
    if (header("Sec-WebSocket-Version") or "").strip() != "13":
        return _text(426, "WebSocket version 13 only", ("Sec-WebSocket-Version", "13"))
    if not valid_key(header("Sec-WebSocket-Key")):
        return _text(400, "missing or invalid Sec-WebSocket-Key")
    return None


def extension_offers(header_items: list[tuple[str, str]]) -> list[str]:
    """Every Sec-WebSocket-Extensions value of a request, in order (an offer may span
    several header lines): for porch.ws.deflate.negotiate. None at all when
    they are longer than it would read (they travel with a socket a member worker
    hands over, in a record of bounded size)."""
    offers = [value for name, value in header_items if name.lower() == "sec-websocket-extensions"]
    return offers if sum(len(o) + 2 for o in offers) <= MAX_OFFERS + 2 else []


def switching_protocols(key: str, extensions: str | None = None) -> bytes:
    """The 101 answer: no subprotocol; `extensions`: the Sec-WebSocket-Extensions
    agreed (permessage-deflate when compression is on and the client offered it)."""
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept_key(key)}", f"Date: {DATE.now()}"]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    lines += [f"{name}: {value}" for name, value in OWN_HEADERS]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Upgrades:
    """Which upgrader takes an upgrade: porch's own sockets (the node page's live view)
    by their exact path, every other path the apps' (the WebSocket hub). Implements
    the listener's Upgrader (a refusal is a tuple; an admission is anything else, here
    the upgrader that gave it with what it gave)."""

    def __init__(self, apps: Any, own: dict[str, Any]) -> None:
        self.apps = apps
        self.own = own

    async def admit(self, ex: Any, version: str) -> Refusal | Routed:
        upgrader = self.own.get(ex.path, self.apps)
        verdict = await upgrader.admit(ex, version)
        if isinstance(verdict, tuple):
            return verdict
        return Routed(upgrader, verdict)

    def open(self, sock: Any, leftover: bytes, admission: Routed) -> object:
        return admission.upgrader.open(sock, leftover, admission.admission)


class Routed:
    __slots__ = ("admission", "upgrader")

    def __init__(self, upgrader: Any, admission: Any) -> None:
        self.upgrader = upgrader
        self.admission = admission

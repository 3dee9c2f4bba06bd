"""The WebSocket opening handshake's pure parts (porch.http_server.upgrade): what is
refused before the hub looks at a request, the 101 porch writes, the extension offers
a socket carries to the hub, and which upgrader takes a path."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from porch.http_server import upgrade
from porch.http_server.upgrade import Routed, Upgrades, extension_offers, handshake_refusal, switching_protocols
from porch.ws.deflate import MAX_OFFERS

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 4.2.2's example
TEXT = ("Content-Type", "text/plain; charset=utf-8")


def headers(**values: str) -> Any:
    named = {k.replace("_", "-").lower(): v for k, v in values.items()}
    return lambda name: named.get(name.lower())


GOOD = {"Connection": "Upgrade", "Sec_WebSocket_Version": "13", "Sec_WebSocket_Key": KEY}


def refusal(method: str = "GET", version: str = "HTTP/1.1", **changes: str | None) -> Any:
    values = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    return handshake_refusal(method, version, headers(**values))


def test_a_sound_handshake_is_not_refused() -> None:
    assert refusal() is None
    # Connection is a list of tokens in any case, with spaces; the version may be padded
    assert refusal(Connection="keep-alive, Upgrade") is None
    assert refusal(Connection="UPGRADE ,keep-alive") is None
    assert refusal(Connection=" upgrade ") is None
    assert refusal(Sec_WebSocket_Version=" 13 ") is None


@pytest.mark.parametrize("method", ["POST", "HEAD", "get", "PUT"])
def test_only_get_opens_a_websocket(method: str) -> None:
    assert refusal(method) == (405, [TEXT, ("Allow", "GET")], b"a WebSocket is opened with GET\n")


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/2", "HTTP/1.2", ""])
def test_only_http_1_1_opens_a_websocket(version: str) -> None:
    assert refusal(version=version) == (400, [TEXT], b"a WebSocket is opened over HTTP/1.1\n")


@pytest.mark.parametrize("connection", [None, "", "keep-alive", "upgraded", "upgrade-insecure", "up grade",
                                        "keep-alive; upgrade"])
def test_connection_must_name_upgrade(connection: str | None) -> None:
    assert refusal(Connection=connection) == (400, [TEXT], b'"Connection" must include "Upgrade"\n')


@pytest.mark.parametrize("version", [None, "", "8", "12", "130", "13, 8", "1 3"])
def test_only_version_13_is_spoken(version: str | None) -> None:
    """RFC 6455 4.4: 426 with the version porch speaks."""
    assert refusal(Sec_WebSocket_Version=version) == (
        426, [TEXT, ("Sec-WebSocket-Version", "13")], b"WebSocket version 13 only\n")


@pytest.mark.parametrize("key", [None, "", "short", KEY[:-1], KEY + "=", "dGhlIHNhbXBsZSBub25jZXg="])
def test_the_key_is_the_base64_of_16_bytes(key: str | None) -> None:
    assert refusal(Sec_WebSocket_Key=key) == (400, [TEXT], b"missing or invalid Sec-WebSocket-Key\n")


def test_the_first_rule_broken_is_the_one_answered() -> None:
    assert refusal("POST", "HTTP/1.0", Connection=None)[0] == 405
    assert refusal("GET", "HTTP/1.0", Connection=None)[2] == b"a WebSocket is opened over HTTP/1.1\n"
    assert refusal(Connection=None, Sec_WebSocket_Version=None)[2] == b'"Connection" must include "Upgrade"\n'
    assert refusal(Sec_WebSocket_Version=None, Sec_WebSocket_Key=None)[0] == 426


def test_the_101_names_the_accept_key_the_date_and_porchs_own_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upgrade.DATE, "now", lambda: "Thu, 01 Jan 1970 00:00:00 GMT")
    own = ("X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n"
           "Content-Security-Policy: frame-ancestors 'none'\r\n")
    head = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n")
    assert switching_protocols(KEY) == (head + own + "\r\n").encode()
    assert switching_protocols(KEY, "") == (head + own + "\r\n").encode()
    assert switching_protocols(KEY, "permessage-deflate; server_max_window_bits=12") == (
        head + "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n" + own + "\r\n"
    ).encode()


def test_extension_offers_are_every_line_in_order_up_to_what_negotiate_reads() -> None:
    items = [("Sec-WebSocket-Extensions", "a"), ("Host", "x"), ("SEC-WEBSOCKET-EXTENSIONS", "b"),
             ("sec-websocket-extensions", "c"), ("Sec-WebSocket-Extension", "d")]
    assert extension_offers(items) == ["a", "b", "c"]
    assert extension_offers([]) == []
    # joined by ", " (as negotiate joins them) they are at most MAX_OFFERS characters
    one = [("Sec-WebSocket-Extensions", "x" * MAX_OFFERS)]
    assert extension_offers(one) == ["x" * MAX_OFFERS]
    assert extension_offers([("Sec-WebSocket-Extensions", "x" * (MAX_OFFERS + 1))]) == []
    half = MAX_OFFERS // 2
    rest = MAX_OFFERS - half - 2
    two = [("Sec-WebSocket-Extensions", "x" * half), ("Sec-WebSocket-Extensions", "y" * rest)]
    assert extension_offers(two) == ["x" * half, "y" * rest]
    two[1] = ("Sec-WebSocket-Extensions", "y" * (rest + 1))
    assert extension_offers(two) == []


class Upgrader:
    def __init__(self, name: str, verdict: Any) -> None:
        self.name = name
        self.verdict = verdict
        self.admitted: list[tuple[Any, str]] = []
        self.opened: list[tuple[Any, bytes, Any]] = []

    async def admit(self, ex: Any, version: str) -> Any:
        self.admitted.append((ex, version))
        return self.verdict

    def open(self, sock: Any, leftover: bytes, admission: Any) -> object:
        self.opened.append((sock, leftover, admission))
        return f"{self.name} socket"


class Ex:
    def __init__(self, path: str) -> None:
        self.path = path


def test_porchs_own_sockets_by_exact_path_every_other_path_the_apps() -> None:
    apps = Upgrader("apps", "app admission")
    page = Upgrader("page", "page admission")
    upgrades = Upgrades(apps, {"/live": page})
    for path, taker in [("/live", page), ("/live/", apps), ("/Live", apps), ("/", apps), ("/app/live", apps)]:
        ex = Ex(path)
        routed = asyncio.run(upgrades.admit(ex, "HTTP/1.1"))
        assert isinstance(routed, Routed)
        assert (routed.upgrader, routed.admission) == (taker, taker.verdict)
        assert taker.admitted[-1] == (ex, "HTTP/1.1")
        assert upgrades.open("sock", b"left", routed) == f"{taker.name} socket"
        assert taker.opened[-1] == ("sock", b"left", taker.verdict)
    assert len(apps.admitted) == 4 and len(page.admitted) == 1


def test_a_refusal_is_passed_on_as_it_is() -> None:
    no = (403, [TEXT], b"no\n")
    page = Upgrader("page", no)
    upgrades = Upgrades(Upgrader("apps", ("unused",)), {"/live": page})
    assert asyncio.run(upgrades.admit(Ex("/live"), "HTTP/1.1")) is no
    assert not page.opened

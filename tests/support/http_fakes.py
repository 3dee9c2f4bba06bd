"""Fakes for the http-server's pieces tested in-process (test_gateway.py, test_ws_hub.py):
a request as the listener hands it over, login sessions kept in memory, and an Auth
built on them (its password hash computed once per run: argon2 is slow on purpose)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from porch.http_server.auth import Auth

SECRET = b"k" * 32


class FakeSessions:
    def __init__(self) -> None:
        self.live: set[str] = set()

    def create(self, app: str | None, expires: int, now: float | None = None) -> str:
        sid = f"sid{len(self.live)}"
        self.live.add(sid)
        return sid

    def is_live(self, sid: str, now: float | None = None) -> bool:
        return sid in self.live

    def revoke(self, sid: str) -> None:
        self.live.discard(sid)


@dataclass
class FakeExchange:
    method: str
    path: str
    query: str = ""
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    peer_ip: str | None = "127.0.0.1"
    peer_port: int | None = 5000
    done: bool = False
    answer: tuple[int, list[tuple[str, str]], bytes] | None = None
    closed: Callable[[], None] | None = None

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[-1] if values else None

    def header_items(self) -> list[tuple[str, str]]:
        return list(self.headers)

    def respond(self, status: int, headers: list[tuple[str, str]], body: bytes, *, own: bool = True) -> None:
        if self.done:
            return
        self.done = True
        self.answer = (status, headers, body)

    def on_close(self, callback: Callable[[], None]) -> None:
        self.closed = callback

    @property
    def status(self) -> int:
        assert self.answer is not None, "not answered"
        return self.answer[0]

    def got(self, name: str) -> str | None:
        assert self.answer is not None
        values = [v for k, v in self.answer[1] if k.lower() == name.lower()]
        return values[-1] if values else None


@functools.cache
def password_hash() -> str:
    import argon2

    return argon2.PasswordHasher().hash("pw")


def fake_auth(node: str, *, password: bool = True) -> Auth:
    """The node's Auth with sessions in memory, and the password "pw" (password=False:
    none can be checked, for tests that never log in and need not wait for argon2)."""
    hashed = password_hash() if password else "no password"
    return Auth(node, SECRET, hashed, sessions=FakeSessions())  # type: ignore[arg-type]

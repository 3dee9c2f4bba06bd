"""porch's HTTP/1 (porch.http_server.h1) when its own request handling fails inside a
parser callback: the client gets 500, not the 400 of a malformed request (llhttp
wraps what a callback raised in a parser error), and the traceback is logged."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest

from porch.http_server.h1 import H1Connection


class Failing:
    """A request layer whose handling of a head fails (a bug of porch's)."""

    def headers_received(self, conn: H1Connection, method: str, target: str, version: str,
                         headers: list[tuple[str, str]]) -> None:
        raise KeyError("a bug")

    def data_received(self, chunk: bytes) -> None:
        pass

    def finish(self) -> None:
        pass

    def client_gone(self) -> None:
        pass


async def exchange(request: bytes) -> bytes:
    ours, theirs = socket.socketpair()
    closed: list[Any] = []
    H1Connection(ours, ("127.0.0.1", 1), Failing, max_header_bytes=8192, max_body_bytes=1 << 20,
                 idle_timeout_s=5, on_closed=closed.append)
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(theirs, request)
    got = b""
    while True:
        chunk = await asyncio.wait_for(loop.sock_recv(theirs, 65536), 5)
        if not chunk:
            break
        got += chunk
    theirs.close()
    return got


def test_a_failure_of_porchs_own_handling_is_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "porch.http_server")
    answer = asyncio.run(exchange(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 500 "), answer[:80]
    assert b"internal error" in answer
    [record] = [r for r in caplog.records if "failed" in r.getMessage()]
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)


def test_a_malformed_request_is_still_400() -> None:
    answer = asyncio.run(exchange(b"GET /x HTTP/1.1\r\nHost localhost\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]


def test_a_stop_on_purpose_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """A callback that stops the parser on purpose (here: a refusal, 505) answers what
    it answers and logs no error (it is how the connection stops reading)."""
    caplog.set_level(logging.ERROR, "porch.http_server")
    answer = asyncio.run(exchange(b"GET /x HTTP/2.0\r\nHost: localhost\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 505 "), answer[:80]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []

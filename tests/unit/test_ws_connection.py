"""porch.ws.conn.WsConnection over a socket pair, in-process: what a client
that sends without reading gets."""

from __future__ import annotations

import asyncio
import socket

from porch.ws.conn import WsConnection
from porch.ws.frames import OP_PING, unmask

MASK = b"\x01\x02\x03\x04"


def ping(payload: bytes) -> bytes:
    return bytes([0x80 | OP_PING, 0x80 | len(payload)]) + MASK + unmask(payload, MASK)


class Events:
    def __init__(self) -> None:
        self.pings = 0

    def on_message(self, payload: bytes, binary: bool) -> None: ...

    def on_ping(self, payload: bytes) -> None:
        self.pings += 1

    def on_pong(self, payload: bytes) -> None: ...

    def on_closed(self, code: int | None, reason: str | None) -> None: ...


def test_pings_from_a_client_that_does_not_read_do_not_grow_the_queue() -> None:
    """RFC 6455 5.5.3 lets a server answer only the latest ping: while the client takes
    nothing, one answer waits (each ping was queued an answer: 20 000 pings queued
    2.5 MB and more, past ws_send_queue_bytes). Every ping is still reported, and once
    the client reads, the latest is answered."""
    async def main() -> None:
        server, client = socket.socketpair()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        events = Events()
        conn = WsConnection(server, events, max_message=1 << 20)
        for i in range(20_000):
            conn._received(ping(b"%05d" % i + b"p" * 120))
        assert events.pings == 20_000
        assert conn.unsent_bytes() < 64 * 1024
        client.setblocking(False)
        got = b""
        for _ in range(200):
            try:
                got += client.recv(1 << 20)
            except BlockingIOError:
                pass
            await asyncio.sleep(0.01)
            if b"19999" in got:
                break
        assert b"19999" + b"p" * 120 in got  # the latest ping answered once the queue drained
        conn.abort()
        client.close()

    asyncio.run(main())

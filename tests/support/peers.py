"""The other end of a socket pair in in-process tests of code on a real asyncio loop:
read without blocking the loop, and waited on with `until`."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any


async def until(condition: Callable[[], Any], what: str) -> None:
    """Let the loop run until `condition` holds (a generous bound: no hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


class PeerEnd:
    """One end of a socket pair: what it sends, and what it has read (`took` files
    each chunk: kept in `data`, unless a subclass does otherwise) until EOF."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.data = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def took(self, chunk: bytes) -> None:
        self.data += chunk

    def pull(self) -> None:
        while not self.eof:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                return
            self.took(chunk)

    def ended(self) -> bool:
        """The other side closed the socket."""
        self.pull()
        return self.eof

    def quiet(self) -> bool:
        """Nothing arrived and the socket is still open."""
        self.pull()
        return self.data == b"" and not self.eof


class FrameClient(PeerEnd):
    """A WebSocket client's end: the server's frames as it reads them."""

    def raw_frames(self) -> list[tuple[int, bytes]]:
        """(first byte, payload) of the whole frames read so far, taken off what was
        read (the first byte keeps FIN and RSV1)."""
        self.pull()
        out = []
        while len(self.data) >= 2:
            b0, b1 = self.data[0], self.data[1]
            assert b0 & 0x80 and not b1 & 0x80, "server frames are whole and unmasked"
            n, at = b1 & 0x7F, 2
            if n == 126:
                n, at = int.from_bytes(self.data[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(self.data[2:10], "big"), 10
            if len(self.data) < at + n:
                break
            out.append((b0, bytes(self.data[at:at + n])))
            del self.data[:at + n]
        return out

    def frames(self) -> list[tuple[int, bytes]]:
        """(opcode, payload) of the whole frames read so far."""
        return [(b0 & 0x0F, payload) for b0, payload in self.raw_frames()]

"""One end of a direct link on its socket (docs/direct.md), for both sides: the
worker's (porch.http_server.links) and the process's (porch.process.direct). The
frames are `porch.link.pipe`'s; this is the I/O around them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

from porch.link.pipe import BadFrame, FrameReader

# One recv's buffer, as the kernel link's and h1's: under glibc's mmap threshold
# (128 KiB). A 256 KiB buffer cost an mmap, an mremap and a munmap per read (the bytes
# object shrunk to what came): ~8 µs of system time per WebSocket message.
READ_SIZE = 65536


class Loop(Protocol):
    """What an end needs of its loop: asyncio's, or a blocking process's PollLoop."""

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None: ...

    def remove_reader(self, fd: int) -> bool: ...

    def add_writer(self, fd: int, callback: Callable[..., object], *args: Any) -> None: ...

    def remove_writer(self, fd: int) -> bool: ...


class PipeEnd:
    """One end of a link on its (non-blocking) socket: whole frames in (`received`),
    frames out (`send`), and one end (`ended`, with why), whoever ends it.

    What the socket has no room for is queued and written by the loop, or, with
    `write_timeout_s` (a blocking process, whose loop runs only while it is in a stub
    call), waited for, at most that long, before `send` returns. Frames sent from
    several threads go out whole, one after another."""

    def __init__(self, sock: socket.socket, loop: Loop, write_timeout_s: float | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.write_timeout_s = write_timeout_s
        self.reader = FrameReader()
        self.out = bytearray()  # what the socket had no room for yet
        self.writing = False
        self.closed = False
        self.lock = threading.Lock()
        loop.add_reader(self.fd, self._readable)

    # -- what an end does with what happens (the two sides differ only here)

    def received(self, frames: list[tuple[int, int, bytes, bytes | None]]) -> None:
        raise NotImplementedError

    def ended(self, why: str) -> None:
        raise NotImplementedError

    # -- the socket

    def send(self, frame: bytes) -> bool:
        """Write one frame; False if the link is (or just turned out to be) gone."""
        with self.lock:
            if self.closed:
                return False
            if self.writing:
                self.out += frame
                return True
            try:
                sent = self.sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close("the link broke")
                return False
            if sent < len(frame):
                if self.write_timeout_s is None:
                    self.out += frame[sent:]
                    self.writing = True
                    self.loop.add_writer(self.fd, self._writable)
                else:
                    self._wait_for_room(frame[sent:])
            return not self.closed

    def _wait_for_room(self, rest: bytes) -> None:
        """Wait for the other end to take the rest of a frame (it reads as it comes)."""
        try:
            self.sock.settimeout(self.write_timeout_s)
            self.sock.sendall(rest)
            self.sock.setblocking(False)
        except OSError as exc:  # the other end is gone or stuck: the link is no use
            self.close(f"a frame could not be written ({exc})")

    def _writable(self) -> None:
        with self.lock:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close("the link broke")
                return
            del self.out[:sent]
            if not self.out:
                self.writing = False
                self.loop.remove_writer(self.fd)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close("the other end closed the link")
            return
        try:
            frames = self.reader.feed(data)
        except BadFrame as exc:
            self.close(f"the other end sent garbage ({exc})")
            return
        if frames:
            self.received(frames)

    def close(self, why: str = "closed by this end") -> None:
        """End the link (once): the socket is closed and `ended(why)` told."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        if self.writing:
            self.loop.remove_writer(self.fd)
        self.sock.close()
        self.ended(why)

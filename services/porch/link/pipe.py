"""The frames of a direct link between the http-server's worker and a process
(docs/direct.md): HTTP requests one way, their answers the other, on a Unix stream
socket the kernel never sees.

A frame is a fixed header and two byte strings:

    u32 length of the rest | u64 id | u64 deadline_ms | u32 body length | u8 flags
    | body | blob (the rest; present if flags & HAS_BLOB)

all little-endian. `id` pairs an answer with its request; `deadline_ms` (requests
only, 0 for none) is the wall-clock time (`porch.wire.now_ms`) after which nobody
waits for the answer. The bytes: `encode` and `FrameReader.feed`; one end of a link
on its socket, driven by a loop, for both sides: `PipeEnd`.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, Protocol

HEADER = struct.Struct("<IQQIB")
HAS_BLOB = 1
MAX_FRAME = 1 << 30  # as the kernel's link (porch.link.server.MAX_FRAME): a larger frame ends the link


class BadFrame(Exception):
    """Bytes that are not a frame of this protocol: the link is closed."""


def encode(id_: int, body: bytes, blob: bytes | None, deadline_ms: int = 0) -> bytes:
    rest = HEADER.size - 4 + len(body) + (len(blob) if blob is not None else 0)
    head = HEADER.pack(rest, id_, deadline_ms, len(body), HAS_BLOB if blob is not None else 0)
    return b"".join((head, body, blob)) if blob is not None else head + body


class FrameReader:
    """Frames from a byte stream: feed what arrived, get the whole frames in it as
    (id, deadline_ms, body, blob or None)."""

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[tuple[int, int, bytes, bytes | None]]:
        buf = self._buf
        buf += data
        out = []
        at = 0
        size = HEADER.size
        end = len(buf)
        while end - at >= size:
            rest, id_, deadline_ms, body_len, flags = HEADER.unpack_from(buf, at)
            # (A length shorter than the header's own fields fails the second test too.)
            if rest > self.max_frame or body_len > rest - (size - 4):
                raise BadFrame(f"a frame of {rest} bytes with a body of {body_len}")
            if end - at - 4 < rest:
                break
            start = at + size
            stop = at + 4 + rest
            body = bytes(buf[start:start + body_len])
            blob = bytes(buf[start + body_len:stop]) if flags & HAS_BLOB else None
            out.append((id_, deadline_ms, body, blob))
            at = stop
        if at:
            del buf[:at]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


READ_SIZE = 256 * 1024


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

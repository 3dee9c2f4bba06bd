"""One server-side WebSocket on its own socket, driven by a loop: asyncio's in the
http-server's worker and in an AsyncProcess, the blocking stub's PollLoop in a Process
that holds its sockets (a direct binding, porch.process.held).

After the upgrade the holder owns the connection's socket outright: the loop watches
it for input once, for
its whole life (`add_reader`), every wake-up reads what is there with one `recv` and
hands each whole message to the owner (`Events`), and a frame is written with one
`send` when the socket has room, or queued (and `add_writer`) when it has not. The
queue is what the client has not taken yet (`unsent_bytes`): the slow-reader limit
is checked against it.

Closing (RFC 6455 5.5.1, 7): the server's close frame, then the client's close frame
is waited for up to `close_wait_s` before the socket is closed; a client's close frame
is answered with the same code and the socket closed at once (the server closes TCP
first). `Events.on_closed` is called exactly once, when the socket is closed, with the
client's close code and reason (None, None: it sent no code, or no close frame).
A protocol error (`porch.ws.frames.ProtocolError`) closes with its code.

Pings: every `ping_interval_s` (0: never) a ping; no pong by the next one closes the
connection (1000, "ping timed out", as Tornado did). A client's ping is answered with
a pong and reported (`on_ping`), and so is a pong (`on_pong`).

Compression (`deflate`, the permessage-deflate agreed in the handshake, RFC 7692):
the client's compressed messages are inflated by the frame reader, and the server's
messages of MIN_COMPRESS bytes or more go compressed (`encode`). Without it nothing
on the way of a frame changes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol

from porch.ws.deflate import MIN_COMPRESS, Agreement, Deflater, Inflater
from porch.ws.frames import (
    CLOSE_NORMAL,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    FrameReader,
    ProtocolError,
    close_payload,
    frame,
    parse_close,
)

log = logging.getLogger("porch.ws")

# One recv's buffer, as the kernel link's and h1's: under glibc's mmap threshold
# (128 KiB). A 256 KiB buffer cost an mmap, an mremap and a munmap per read (the bytes
# object shrunk to what came): ~8 µs of system time per WebSocket message.
READ_SIZE = 65536
CLOSE_WAIT_S = 5.0  # how long a close frame waits for the client's before the socket closes
PROTOCOL_ERROR_LINGER_S = 2.0  # after a protocol error: how long the client may still send


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Loop(Protocol):
    """What a connection needs of its loop: asyncio's, or a blocking process's
    (porch.link.blocking_dealer.PollLoop)."""

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None: ...

    def remove_reader(self, fd: int) -> bool: ...

    def add_writer(self, fd: int, callback: Callable[..., object], *args: Any) -> None: ...

    def remove_writer(self, fd: int) -> bool: ...

    def call_soon(self, callback: Callable[..., object], *args: Any) -> Cancellable: ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Cancellable: ...


class Events(Protocol):
    """What a connection tells its owner (the hub's channel), in the loop."""

    def on_message(self, payload: bytes, binary: bool) -> None: ...

    def on_ping(self, payload: bytes) -> None: ...

    def on_pong(self, payload: bytes) -> None: ...

    def on_closed(self, code: int | None, reason: str | None) -> None: ...


class WsConnection:
    __slots__ = ("_close_timer", "_closed", "_deflater", "_discard", "_events", "_fd", "_loop", "_out",
                 "_pending_pong", "_ping_interval_s", "_ping_timer", "_ponged", "_reader", "_sent_close",
                 "_sock", "_writing", "client_code", "client_reason", "error_code", "peer")

    def __init__(self, sock: socket.socket, events: Events, *, max_message: int,
                 ping_interval_s: float = 0.0, greeting: bytes = b"", leftover: bytes = b"",
                 loop: Loop | None = None, deflate: Agreement | None = None) -> None:
        """`greeting`: written before anything else (the 101); `leftover`: bytes of the
        client already read from the socket, handled as if they arrived now. If the
        greeting cannot be written, the connection is closed when this returns.
        `deflate`: the compression the greeting agreed to, if any."""
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._events = events
        self._loop: Loop = loop or asyncio.get_running_loop()
        if deflate is None:
            self._reader = FrameReader(max_message)
            self._deflater: Deflater | None = None
        else:
            self._reader = FrameReader(max_message, Inflater(deflate, max_message))
            self._deflater = Deflater(deflate)
        self._out = bytearray()  # bytes the socket had no room for
        self._writing = False
        self._sent_close = False
        self._closed = False
        self._discard = False  # after a protocol error: read and drop until EOF
        self._close_timer: Cancellable | None = None
        self._ping_interval_s = ping_interval_s
        self._ping_timer: Cancellable | None = None
        self._ponged = True
        # A ping's answer while the client is not taking what was sent: only the latest
        # is kept, and sent once the queue drains (RFC 6455 5.5.3), so a client that
        # pings without reading cannot grow the queue.
        self._pending_pong: bytes | None = None
        self.client_code: int | None = None
        self.client_reason: str | None = None
        self.error_code: int | None = None  # the code this side closed with for a protocol error
        try:
            self.peer: tuple[str, int] | None = sock.getpeername()[:2]
        except OSError:
            self.peer = None
        if greeting:
            self._write(greeting)
            if self._closed:
                return
        self._loop.add_reader(self._fd, self._readable)
        if ping_interval_s > 0:
            self._ping_timer = self._loop.call_later(ping_interval_s, self._ping_due)
        if leftover:
            self._loop.call_soon(self._received, leftover)

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        """The socket is closed (on_closed was called, or is about to be)."""
        return self._closed

    @property
    def closing(self) -> bool:
        """A close frame was sent (or the socket is closed): nothing more goes out."""
        return self._sent_close or self._closed

    def unsent_bytes(self) -> int:
        """What was written that the client has not taken yet."""
        return len(self._out)

    # ------------------------------------------------------------------ sending

    def send(self, payload: bytes, binary: bool) -> None:
        """One message (payload as bytes; text must be UTF-8)."""
        if not self._sent_close and not self._closed:
            self._write(self.encode(payload, binary))

    def encode(self, payload: bytes, binary: bool) -> bytes:
        """One message as the frame that goes on the wire (compressed, if agreed and
        long enough), for `send_encoded`: what the client has to take is its length.
        With compression, frames must go out in the order they were encoded."""
        deflater = self._deflater
        if deflater is not None and len(payload) >= MIN_COMPRESS:
            return frame((OP_BINARY if binary else OP_TEXT) | RSV1, deflater.deflate(payload))
        return frame(OP_BINARY if binary else OP_TEXT, payload)

    def send_encoded(self, data: bytes) -> None:
        """A frame from `encode`."""
        if not self._sent_close and not self._closed:
            self._write(data)

    def ping(self, payload: bytes = b"") -> None:
        if not self._sent_close and not self._closed:
            self._write(frame(OP_PING, payload[:125]))

    def pong(self, payload: bytes = b"") -> None:
        if not self._sent_close and not self._closed:
            self._write(frame(OP_PONG, payload[:125]))

    def close(self, code: int | None = CLOSE_NORMAL, reason: str | None = None,
              wait_s: float = CLOSE_WAIT_S) -> None:
        """Send a close frame and close the socket once the client answers, or after
        wait_s (at once, if it already sent its own)."""
        if self._closed:
            return
        if not self._sent_close:
            self._sent_close = True
            self._write(frame(OP_CLOSE, close_payload(code, reason)))
        if self._closed:  # the write found the client gone
            return
        if self.client_code is not None:
            self._finish()
            return
        if self._close_timer is not None:
            if wait_s >= CLOSE_WAIT_S:
                return
            self._close_timer.cancel()
        self._close_timer = self._loop.call_later(wait_s, self.abort)

    def abort(self) -> None:
        """Close the socket now, whatever is unsent."""
        self._finish()

    def _write(self, data: bytes) -> None:
        if self._writing:
            self._out += data
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._finish()
            return
        if sent < len(data):
            self._out += data[sent:]
            self._writing = True
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._finish()
            return
        del self._out[:sent]
        if not self._out:
            self._writing = False
            self._loop.remove_writer(self._fd)
            pending, self._pending_pong = self._pending_pong, None
            if pending is not None:
                self.pong(pending)
            if self._discard:
                try:
                    self._sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    # ------------------------------------------------------------------ receiving

    def _readable(self) -> None:
        try:
            data = self._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._finish()
            return
        self._received(data)

    def _received(self, data: bytes) -> None:
        if self._closed or self._discard:
            return
        try:
            items = self._reader.feed(data)
        except ProtocolError as exc:
            self.error_code = exc.code
            log.info("websocket from %s: %s: closing with %d", self.peer, exc.reason, exc.code)
            self._sent_close_then_finish(exc.code, exc.reason)
            return
        events = self._events
        for opcode, payload in items:
            if self._closed:
                return
            if opcode in (OP_TEXT, OP_BINARY):
                if not self._sent_close:
                    events.on_message(payload, opcode == OP_BINARY)
            elif opcode == OP_PING:
                if self._writing:
                    self._pending_pong = payload
                else:
                    self.pong(payload)
                events.on_ping(payload)
            elif opcode == OP_PONG:
                self._ponged = True
                events.on_pong(payload)
            else:  # OP_CLOSE: answer with its code (if we have not closed already), then close
                code, reason = parse_close(payload)
                self.client_code = code if code is not None else -1
                self.client_reason = reason
                if not self._sent_close:
                    self._sent_close = True
                    self._write(frame(OP_CLOSE, close_payload(code)))
                self._finish()
                return

    def _sent_close_then_finish(self, code: int, reason: str) -> None:
        """A protocol error: the close frame goes (if none went yet), what the client
        still sends is read and dropped (closing with unread input would reset the
        connection before the client read the close frame), and the socket closes at
        the client's EOF or after PROTOCOL_ERROR_LINGER_S."""
        self._discard = True
        if not self._sent_close:
            self._sent_close = True
            self._write(frame(OP_CLOSE, close_payload(code, reason)))
        if self._closed:
            return
        if not self._out:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._close_timer = self._loop.call_later(PROTOCOL_ERROR_LINGER_S, self.abort)

    # ------------------------------------------------------------------ pings

    def _ping_due(self) -> None:
        self._ping_timer = None
        if self._closed or self._sent_close:
            return
        if not self._ponged:
            self.close(CLOSE_NORMAL, "ping timed out")
            return
        self._ponged = False
        self.ping()
        self._ping_timer = self._loop.call_later(self._ping_interval_s, self._ping_due)

    # ------------------------------------------------------------------ the end

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        loop.remove_reader(self._fd)  # (a no-op if it was never added)
        if self._writing:
            loop.remove_writer(self._fd)
            self._writing = False
        for timer in (self._close_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._ping_timer = None
        try:
            if not self._out:
                # Everything was sent: a FIN rather than a reset, and no wait.
                self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._sock.close()
        code = self.client_code if self.client_code is not None and self.client_code >= 0 else None
        try:
            self._events.on_closed(code, self.client_reason if code is not None else None)
        except Exception:
            log.exception("websocket close handling failed")

"""The process's end of a direct HTTP link (docs/direct.md).

On a binding made with `direct`, the http-server's worker offers the owner a link of
its own (a Unix stream socket pair, handed over like a WebSocket of a direct binding:
`porch.process.held.claim`). Once the stub took it, the worker sends that process's
HTTP requests on the link instead of through the kernel, and the answers come back on
it: two hand-offs between processes per request instead of four. The app sees the same
Message (source "http-server:distro:sys", the same body and blob) and answers it with
the same `respond`, which writes on the link the request came by (`Message.via`).

The link ends when either side closes it or dies: the worker then fails what waited
on it (502, as when an app dies with a request) and goes through the kernel until it
has offered a new link and the process took it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from porch.address import HTTP_SERVER
from porch.link.fds import BlobFile
from porch.link.pipe import BadFrame, FrameReader, encode
from porch.process.message import Blob, Message
from porch.ws.conn import Loop

log = logging.getLogger("porch.process")

READ_SIZE = 256 * 1024
WRITE_TIMEOUT_S = 30.0  # a blocking process's answer waits this long for room on the link


class LinkEnd:
    """One link to a worker: requests in (as Messages for `deliver`), answers out."""

    def __init__(self, our: str, sock: socket.socket, loop: Loop, deliver: Callable[[Message], None],
                 on_end: Callable[[LinkEnd], None], blocking_writes: bool = False) -> None:
        """`blocking_writes` (a blocking process): an answer is written whole before
        `respond` returns, as nothing else would write the rest while the process
        computes (or after it exits); else what the socket has no room for is written
        by the loop."""
        sock.setblocking(False)
        self.blocking_writes = blocking_writes
        # Answers from several threads of a process go out whole, one after another.
        self.lock = threading.Lock()
        self.our = our
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.deliver = deliver
        self.on_end = on_end
        self.reader = FrameReader()
        self.out = bytearray()
        self.writing = False
        self.closed = False
        loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        try:
            frames = self.reader.feed(data)
        except BadFrame as exc:
            log.warning("%s: the http-server's link sent garbage (%s); closing it", self.our, exc)
            self.close()
            return
        for id_, deadline_ms, body, blob in frames:
            self.deliver(Message(id_, HTTP_SERVER, self.our, True, body,
                                 Blob(blob) if blob is not None else None, None, True, deadline_ms,
                                 via=self))

    def respond(self, request: Message, body: bytes, blob: Blob | BlobFile | None) -> bool:
        """Write the answer to `request` (which came on this link); False if the link
        is gone (the worker has failed the request already)."""
        if isinstance(blob, BlobFile):  # a body already in a memfd: its bytes go on the link
            try:
                data: bytes | None = os.pread(blob.fd, blob.size, 0)
            finally:
                os.close(blob.detach())
        else:
            data = blob.bytes if blob is not None else None
        frame = encode(request.id, body, data)
        with self.lock:
            if self.closed:
                return False
            self._write(frame)
            return not self.closed

    def _write(self, data: bytes) -> None:
        if self.writing:
            self.out += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            if self.blocking_writes:
                self._write_rest(data[sent:])
                return
            self.out += data[sent:]
            self.writing = True
            self.loop.add_writer(self.fd, self._writable)

    def _write_rest(self, rest: bytes) -> None:
        """Wait for the worker to take the rest of an answer (it reads as it comes)."""
        try:
            self.sock.settimeout(WRITE_TIMEOUT_S)
            self.sock.sendall(rest)
            self.sock.setblocking(False)
        except OSError as exc:  # the worker is gone or stuck: the link is no use
            log.warning("%s: an answer could not be written on the direct link (%s)", self.our, exc)
            self.close()

    def _writable(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self.out[:sent]
        if not self.out:
            self.writing = False
            self.loop.remove_writer(self.fd)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        if self.writing:
            self.loop.remove_writer(self.fd)
        self.sock.close()
        log.info("%s: the http-server's direct link closed", self.our)
        self.on_end(self)


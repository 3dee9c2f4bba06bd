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
from collections.abc import Callable

from porch.address import HTTP_SERVER
from porch.link.fds import BlobFile
from porch.link.pipe import BadFrame, FrameReader, encode
from porch.process.message import Blob, Message
from porch.ws.conn import Loop

log = logging.getLogger("porch.process")

READ_SIZE = 256 * 1024


class LinkEnd:
    """One link to a worker: requests in (as Messages for `deliver`), answers out."""

    def __init__(self, our: str, sock: socket.socket, loop: Loop, deliver: Callable[[Message], None],
                 on_end: Callable[[LinkEnd], None]) -> None:
        sock.setblocking(False)
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
        if self.closed:
            return False
        self._write(encode(request.id, body, data))
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
            self.out += data[sent:]
            self.writing = True
            self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
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


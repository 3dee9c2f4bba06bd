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
from porch.link.pipe import encode
from porch.link.pipe_end import Loop, PipeEnd
from porch.process.message import Blob, Message

log = logging.getLogger("porch.process")

WRITE_TIMEOUT_S = 30.0  # a blocking process's answer waits this long for room on the link


class LinkEnd(PipeEnd):
    """One link to a worker: requests in (as Messages for `deliver`), answers out."""

    def __init__(self, our: str, sock: socket.socket, loop: Loop, deliver: Callable[[Message], None],
                 on_end: Callable[[LinkEnd], None], blocking_writes: bool = False) -> None:
        """`blocking_writes` (a blocking process): an answer is written whole before
        `respond` returns, as nothing else would write the rest while the process
        computes (or after it exits); else what the socket has no room for is written
        by the loop."""
        self.our = our
        self.deliver = deliver
        self.on_end = on_end
        super().__init__(sock, loop, WRITE_TIMEOUT_S if blocking_writes else None)

    def received(self, frames: list[tuple[int, int, bytes, bytes | None]]) -> None:
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
        return self.send(encode(request.id, body, data))

    def ended(self, why: str) -> None:
        log.info("%s: the http-server's direct link closed (%s)", self.our, why)
        self.on_end(self)

"""The frames of a direct link between the http-server's worker and a process
(docs/direct.md): HTTP requests one way, their answers the other, on a Unix stream
socket the kernel never sees.

A frame is a fixed header and two byte strings:

    u32 length of the rest | u64 id | u64 deadline_ms | u32 body length | u8 flags
    | body | blob (the rest; present if flags & HAS_BLOB)

all little-endian. `id` pairs an answer with its request; `deadline_ms` (requests
only, 0 for none) is the wall-clock time (`porch.wire.now_ms`) after which nobody
waits for the answer. Bytes only, no sockets: `encode` and `FrameReader.feed` (one end
of a link on its socket is `porch.link.pipe_end.PipeEnd`).
"""

from __future__ import annotations

import struct

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


"""What the two stub APIs (blocking `Process`, asyncio `AsyncProcess`) share above the
session: turning what a caller gives into bytes and blobs, and answering a request
without raising. One copy, so the twins cannot drift apart in what they accept.
"""

from __future__ import annotations

import logging
import warnings

from porch.link.fds import BlobFile
from porch.process.message import Blob, Message, Offline, PorchError
from porch.process.session import KernelSession
from porch.throttle import Every

log = logging.getLogger("porch.process")

# A local wait ends this long after the deadline even if the kernel never says Timeout
# (it may be restarting); the kernel's own Timeout normally arrives first.
LOCAL_GRACE_S = 0.25
DEFAULT_TIMEOUT_S = 5.0

BlobLike = Blob | BlobFile | bytes | str | None


def as_bytes(body: bytes | str) -> bytes:
    """A body as bytes: str is sent as UTF-8."""
    return body.encode() if isinstance(body, str) else bytes(body)


def as_blob(blob: BlobLike, mime: str | None = None) -> Blob | BlobFile | None:
    """A blob from what the caller gave: a Blob or BlobFile as is, bytes or str wrapped
    (with `mime`); None stays None (no blob, which is not the same as an empty one)."""
    if blob is None or isinstance(blob, Blob | BlobFile):
        return blob
    return Blob(as_bytes(blob), mime)


def answer_args(to: object, body: bytes | str) -> tuple[Message | None, bytes | str]:
    """`respond(to, body)` arguments, accepting the blocking stub's old `respond(body)`
    (the body first) with a DeprecationWarning: a body is never a Message."""
    if isinstance(to, bytes | bytearray | memoryview | str):
        if body:
            raise TypeError("respond(to, body): `to` is the request to answer, not a body")
        warnings.warn("respond(body) is deprecated: write respond(msg, body) (or respond(body=...) "
                      "to answer the last request of a blocking Process)", DeprecationWarning,
                      stacklevel=3)
        return None, bytes(to) if not isinstance(to, str) else to
    if to is not None and not isinstance(to, Message):
        raise TypeError(f"respond: `to` must be the Message to answer, not {type(to).__name__}")
    return to, body


def respond_or_drop(core: KernelSession, request: Message | None, body: bytes | str,
                    blob: BlobLike, mime: str | None, metadata: str | None) -> bool:
    """Send a Response; False (and a log line) when the kernel is not reachable.

    Never raised for a kernel that is away: nobody could act on it, the requester has
    been told Offline by its own side. A process answering in a loop thus rides out a
    kernel restart like any other process."""
    if request is None or not request.is_request:
        raise PorchError("respond: no request to answer (pass the Message: respond(msg, body))")
    if request.via is not None:  # it came on a direct link (porch.process.direct): back on it
        return bool(request.via.respond(request, as_bytes(body), as_blob(blob, mime)))
    try:
        core.send_response(request, as_bytes(body), blob=as_blob(blob, mime), metadata=metadata)
    except Offline as exc:
        dropped = _dropped_responses.due()
        if dropped:
            log.info("%s: dropped %d response(s), the last to request %d from %s: %s",
                     core.process_id, dropped, request.id, request.source, exc.detail)
        return False
    return True


_dropped_responses = Every()  # while the kernel is away, every answer would log

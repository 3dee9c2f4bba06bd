"""What a process receives and the errors it can get, independent of any socket."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, frozen=True)
class Blob:
    """Kinode's LazyLoadBlob: bulk bytes beside a message (HTTP bodies, WS payloads)."""

    bytes: bytes
    mime: str | None = None


@dataclass(slots=True)
class Message:
    """A Request or a Response, as delivered to a process.

    `source` is always the kernel-verified sender. For a Request, `reply_to` is where its
    Response must go (the rsvp if one was given, else the source).
    """

    id: int
    source: str
    target: str
    is_request: bool
    body: bytes
    blob: Blob | None = None
    metadata: str | None = None
    expects_response: bool = False
    deadline_ms: int = 0
    rsvp: str = ""
    # The direct link a request came by (porch.process.direct.LinkEnd), not the kernel:
    # its answer goes back the same way.
    via: Any = field(default=None, repr=False, compare=False)

    @property
    def is_response(self) -> bool:
        return not self.is_request

    @property
    def reply_to(self) -> str:
        return self.rsvp or self.source


class PorchError(Exception):
    """Base of every error the stub raises."""


class SendError(PorchError):
    """A request that could not be answered; `kind` is the variant name.

    Raised by the awaiting calls, and by `await_message` for a request sent with
    `expects_response` whose answer failed. Catch a subclass to handle one variant.
    """

    kind = "SendError"

    def __init__(self, target: str, id: int, detail: str = "", delivered: bool = False) -> None:
        self.target = target
        self.id = id
        self.detail = detail
        # Offline only: the request had reached the target before it went away.
        self.delivered = delivered
        super().__init__(f"{self.kind}: request {id} to {target}" + (f": {detail}" if detail else ""))


class Offline(SendError):
    """No live process with that id, it died with the request pending, or the kernel
    connection was lost."""

    kind = "Offline"


class Timeout(SendError):
    """The deadline passed without a response."""

    kind = "Timeout"


class NoCapability(SendError):
    """The node config does not let this process message the target."""

    kind = "NoCapability"


SEND_ERRORS: dict[str, type[SendError]] = {
    cls.kind: cls for cls in (Offline, Timeout, NoCapability)
}


class KernelRefused(PorchError):
    """The kernel refused this process: `code` is the KernelError code name
    (InvalidProcessId, AlreadyRegistered, VersionMismatch, ...)."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"kernel refused: {code}: {detail}")


class KernelUnreachable(PorchError):
    """No kernel answered at the endpoint within the connect timeout."""

"""Process ids: "name:package:publisher", parsed and validated.

"Kimap-safe" (Kinode's rule): process and package names match ^[a-z0-9-]+$, the
publisher matches ^[a-z0-9.-]+$. porch also bounds them: a name or package of at most
MAX_NAME characters, a publisher (a domain name) of at most MAX_PUBLISHER, so an id
cannot be made to fill memory, logs or headers. The kernel refuses to register anything
else, so every id seen on the wire obeys both rules.

The package distro:sys is reserved for the node's own services (the kernel,
http-server, http-client and the RPC endpoint's identity): only a process holding the
node's service token may register an id in it (`porch.node.service_token`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NAME = 64
MAX_PUBLISHER = 253
_NAME = re.compile(rf"[a-z0-9-]{{1,{MAX_NAME}}}")
_PUBLISHER = re.compile(rf"[a-z0-9.-]{{1,{MAX_PUBLISHER}}}")

KERNEL = "kernel:distro:sys"
HTTP_SERVER = "http-server:distro:sys"
HTTP_CLIENT = "http-client:distro:sys"
RPC = "rpc:distro:sys"
HOMEPAGE = "homepage:homepage:sys"
RESERVED_PACKAGE = "distro:sys"


class InvalidProcessId(ValueError):
    """A string that is not a kimap-safe "name:package:publisher"."""


SHOWN = 100  # characters of a refused id that its error repeats (it reaches the wire)


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


@dataclass(frozen=True, slots=True)
class ProcessId:
    process: str
    package: str
    publisher: str

    @classmethod
    def parse(cls, text: str) -> ProcessId:
        parts = text.split(":")
        shown = _shown(text)
        if len(parts) != 3:
            raise InvalidProcessId(
                f"process id {shown!r} must be name:package:publisher (three parts)"
            )
        process, package, publisher = parts
        if not _NAME.fullmatch(process) or not _NAME.fullmatch(package):
            raise InvalidProcessId(
                f"process id {shown!r}: name and package must match [a-z0-9-]+, "
                f"at most {MAX_NAME} characters each"
            )
        if not _PUBLISHER.fullmatch(publisher):
            raise InvalidProcessId(f"process id {shown!r}: publisher must match [a-z0-9.-]+, "
                                   f"at most {MAX_PUBLISHER} characters")
        return cls(process, package, publisher)

    @property
    def package_id(self) -> str:
        """"package:publisher", the part all processes of one package share."""
        return f"{self.package}:{self.publisher}"

    def __str__(self) -> str:
        return f"{self.process}:{self.package}:{self.publisher}"


def validate(text: str) -> str:
    """Return text unchanged if it is a kimap-safe process id, else raise InvalidProcessId."""
    ProcessId.parse(text)
    return text


def is_valid(text: str) -> bool:
    try:
        ProcessId.parse(text)
    except InvalidProcessId:
        return False
    return True


def is_reserved(text: str) -> bool:
    """An id in the package reserved for the node's services (distro:sys)."""
    return text.endswith(":" + RESERVED_PACKAGE) and text.count(":") == 2

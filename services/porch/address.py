"""Process ids: "name:package:publisher", parsed and validated.

"Kimap-safe" (reference section 1.4): process and package names match ^[a-z0-9-]+$, the
publisher matches ^[a-z0-9.-]+$. The kernel refuses to register anything else, so every
id seen on the wire is kimap-safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"[a-z0-9-]+")
_PUBLISHER = re.compile(r"[a-z0-9.-]+")

KERNEL = "kernel:distro:sys"
HTTP_SERVER = "http-server:distro:sys"
HTTP_CLIENT = "http-client:distro:sys"
HOMEPAGE = "homepage:homepage:sys"


class InvalidProcessId(ValueError):
    """A string that is not a kimap-safe "name:package:publisher"."""


@dataclass(frozen=True, slots=True)
class ProcessId:
    process: str
    package: str
    publisher: str

    @classmethod
    def parse(cls, text: str) -> ProcessId:
        parts = text.split(":")
        if len(parts) != 3:
            raise InvalidProcessId(
                f"process id {text!r} must be name:package:publisher (three parts)"
            )
        process, package, publisher = parts
        if not _NAME.fullmatch(process) or not _NAME.fullmatch(package):
            raise InvalidProcessId(
                f"process id {text!r}: name and package must match [a-z0-9-]+"
            )
        if not _PUBLISHER.fullmatch(publisher):
            raise InvalidProcessId(f"process id {text!r}: publisher must match [a-z0-9.-]+")
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

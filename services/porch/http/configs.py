"""How a process binds a path: kinode_process_lib's HttpBindingConfig and
WsBindingConfig, with the same defaults.

Two ways to write one, the same config either way:

    HttpBindingConfig(authenticated=False, local_only=True)
    HttpBindingConfig().with_authenticated(False).with_local_only(True)

The chained form is Kinode's builder (`HttpBindingConfig::default().authenticated(false)
.local_only(true)`) with a `with_` prefix: in Python a field and a method cannot share
a name, and `config.authenticated` must stay the bool it is (a method there would be
truthy, silently). Configs are immutable; each `with_*` returns a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from porch.process.message import Blob


def _check_flags(config: object) -> None:
    """A flag given as "false" would be truthy: refuse anything but a bool."""
    for f in fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        if f.type == "bool" and not isinstance(value, bool):
            raise TypeError(f"{type(config).__name__}.{f.name} must be a bool, not {value!r}")


@dataclass(frozen=True)
class HttpBindingConfig:
    """How a path is bound. Defaults are process_lib's: authenticated, not local-only,
    not on a secure subdomain, dynamic (no static content)."""

    authenticated: bool = True
    local_only: bool = False
    secure_subdomain: bool = False
    static_content: Blob | None = None
    # Not in Kinode: seconds the server waits for this path's answers (None = node default).
    timeout: float | None = None
    # Not in Kinode: requests come on a direct link from the http-server instead of
    # through the kernel (docs/direct.md); only a process on the node's machine can.
    direct: bool = False

    def __post_init__(self) -> None:
        _check_flags(self)
        if self.static_content is not None and not isinstance(self.static_content, Blob):
            raise TypeError("static_content must be a porch.Blob (bytes and mime) or None")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be positive seconds, not {self.timeout!r}")

    def with_(self, **changes: object) -> HttpBindingConfig:
        """A copy with the given fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def with_authenticated(self, authenticated: bool) -> HttpBindingConfig:
        return replace(self, authenticated=authenticated)

    def with_local_only(self, local_only: bool) -> HttpBindingConfig:
        return replace(self, local_only=local_only)

    def with_direct(self, direct: bool) -> HttpBindingConfig:
        return replace(self, direct=direct)

    def with_secure_subdomain(self, secure_subdomain: bool) -> HttpBindingConfig:
        return replace(self, secure_subdomain=secure_subdomain)

    def with_static_content(self, content: Blob | bytes | None, mime: str | None = None) -> HttpBindingConfig:
        """Static content served by the http-server itself (None: dynamic again)."""
        blob = Blob(bytes(content), mime) if isinstance(content, bytes | bytearray) else content
        return replace(self, static_content=blob)

    def with_timeout(self, timeout: float | None) -> HttpBindingConfig:
        return replace(self, timeout=timeout)


@dataclass(frozen=True)
class WsBindingConfig:
    """How a WebSocket path is bound; defaults are process_lib's (authenticated, no
    secure subdomain, not an extension).

    `direct` (not in Kinode): this process holds its clients' sockets itself. The
    http-server still checks and answers each upgrade, then hands the socket over;
    frames go between client and process without the http-server or the kernel in
    between (docs/websockets.md). Only a process on the node's machine can: elsewhere
    the binding is made as if `direct` were False. Not for extensions."""

    authenticated: bool = True
    secure_subdomain: bool = False
    extension: bool = False
    direct: bool = False

    def __post_init__(self) -> None:
        _check_flags(self)

    def with_(self, **changes: object) -> WsBindingConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    def with_authenticated(self, authenticated: bool) -> WsBindingConfig:
        return replace(self, authenticated=authenticated)

    def with_secure_subdomain(self, secure_subdomain: bool) -> WsBindingConfig:
        return replace(self, secure_subdomain=secure_subdomain)

    def with_extension(self, extension: bool) -> WsBindingConfig:
        return replace(self, extension=extension)

    def with_direct(self, direct: bool) -> WsBindingConfig:
        return replace(self, direct=direct)

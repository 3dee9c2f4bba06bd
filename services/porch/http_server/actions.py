"""What a process's binding actions do to the table (docs/kinode.md §1.4-§1.7, §1.11).

Pure: decode, validate, mutate the BindingTable, say what to answer. The WebSocket
actions that touch live sockets (push, close) are the websocket module's business.
"""

from __future__ import annotations

from porch.address import HOMEPAGE, is_valid
from porch.http_server.bindings import BindingTable, HttpBinding, Static, WsBinding
from porch.http_server.paths import format_path, homepage_may_bind, secure_subdomain
from porch.process.message import Blob
from porch.wire import http_pb2

Action = http_pb2.HttpServerAction
ErrorKind = http_pb2.HttpServerError.Kind

BINDING_ACTIONS = frozenset({
    "bind", "secure_bind", "unbind", "web_socket_bind", "web_socket_secure_bind",
    "web_socket_unbind",
})


class ActionError(Exception):
    """An action refused with an HttpServerError variant."""

    def __init__(self, kind: int, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{ErrorKind.Name(kind)}: {detail}")


def decode(body: bytes) -> tuple[str, http_pb2.HttpServerAction]:
    """The action and its variant name; MalformedRequest if it is not one."""
    action = Action()
    try:
        action.ParseFromString(body)
    except Exception:
        raise ActionError(ErrorKind.MalformedRequest,
                          "body is not a porch.v1.HttpServerAction") from None
    which = action.WhichOneof("action")
    if which is None:
        raise ActionError(ErrorKind.MalformedRequest, "no action set")
    if which in ("web_socket_open", "web_socket_ext_push_data"):
        raise ActionError(ErrorKind.MalformedRequest,
                          f"{which} is sent by the server, never to it")
    return which, action


def plan_binding(source: str, which: str, action: http_pb2.HttpServerAction,
                 blob: Blob | None) -> HttpBinding | WsBinding:
    """The binding a (un)bind action from `source` asks for, checked, without changing
    anything: the server saves it, then puts it in its table.

    Ownership: the path is always under /<source> (format_path), except for the
    homepage, whose raw paths must stay out of every process's namespace."""
    if which not in BINDING_ACTIONS:
        raise ActionError(ErrorKind.MalformedRequest, f"{which} is not a binding action")
    if not is_valid(source):
        raise ActionError(ErrorKind.InvalidSourceProcess, f"{source!r} is not a kimap-safe process id")
    variant = getattr(action, which)
    path = format_path(source, variant.path)
    if source == HOMEPAGE and not homepage_may_bind(path):
        raise ActionError(ErrorKind.InvalidSourceProcess,
                          f"{source} may not bind {path!r}: it lies in a process's namespace")
    if which == "bind":
        b = action.bind
        return HttpBinding(path, source, _authenticated(b), b.local_only, None,
                           _static(b.cache, blob), b.timeout_ms, b.direct)
    if which == "secure_bind":
        sb = action.secure_bind
        return HttpBinding(path, source, True, False, secure_subdomain(source),
                           _static(sb.cache, blob), sb.timeout_ms, sb.direct)
    if which == "unbind":
        return HttpBinding(path, None)
    if which == "web_socket_bind":
        w = action.web_socket_bind
        return WsBinding(path, source, _authenticated(w), None, w.extension, w.direct and not w.extension)
    if which == "web_socket_secure_bind":
        wsb = action.web_socket_secure_bind
        return WsBinding(path, source, True, secure_subdomain(source), wsb.extension,
                         wsb.direct and not wsb.extension)
    return WsBinding(path, None)  # web_socket_unbind


def apply_binding(table: BindingTable, source: str, which: str,
                  action: http_pb2.HttpServerAction, blob: Blob | None) -> str:
    """plan_binding, put in `table` at once (nothing saved); the full path affected."""
    binding = plan_binding(source, which, action, blob)
    table.bind(binding)
    return binding.path


def _authenticated(bind: Action.Bind | Action.WebSocketBind) -> bool:
    """Fail closed: a bind that does not say `authenticated` gets a path that needs
    login (only an explicit false makes it public)."""
    return bind.authenticated if bind.HasField("authenticated") else True


def _static(cache: bool, blob: Blob | None) -> Static | None:
    if not cache:
        return None
    if blob is None:
        raise ActionError(ErrorKind.NoBlob, "cache=true needs the content as the blob")
    return Static.of(blob.bytes, blob.mime)


def _ok() -> bytes:
    result = http_pb2.HttpServerResult()
    result.ok.SetInParent()
    return result.SerializeToString()


OK = _ok()  # the same bytes for every successful action: build them once


def ok() -> bytes:
    return OK


def err(kind: int, detail: str) -> bytes:
    result = http_pb2.HttpServerResult()
    result.err.kind = kind  # type: ignore[assignment]
    result.err.detail = detail
    return result.SerializeToString()

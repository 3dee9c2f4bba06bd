"""Serving HTTP and WebSockets from a process: kinode_process_lib::http::server in Python.

    import porch
    from porch.http.server import HttpServer, HttpBindingConfig, HttpResponse

    proc = porch.Process()
    server = HttpServer(proc)
    server.bind_http_path("/api", HttpBindingConfig(authenticated=False))
    while True:
        msg = proc.await_message()
        server.handle_request(msg, lambda req: HttpResponse(200).header(
            "Content-Type", "text/plain").body(b"hello " + req.body))

Fixes of process_lib's known bugs (reference section 9, D13): `modify_http_path` sends
the static content it was given (it always failed with NoBlob) and honours
`secure_subdomain`; `serve_ui` binds index.html at its own path even with no roots.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from porch.address import HTTP_SERVER
from porch.process.aio import AsyncProcess
from porch.process.blocking import Process
from porch.process.message import Blob, Message, Offline, SendError
from porch.throttle import Every
from porch.wire import http_pb2

log = logging.getLogger("porch.http")
Action = http_pb2.HttpServerAction
WS_TYPES = ("Text", "Binary", "Ping", "Pong", "Close")


class HttpServerError(Exception):
    """An action the http-server refused, or did not answer.

    `kind` is the variant name: MalformedRequest, NoBlob, InvalidSourceProcess,
    WsPingPongTooLong, WsChannelNotFound from the server, and StateNotSaved (not in
    Kinode: the node could not save the change, so nothing changed; try again later);
    Timeout and UnexpectedResponse from this side (as process_lib).
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


# ---------------------------------------------------------------------------- configs


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

    def with_(self, **changes: object) -> HttpBindingConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class WsBindingConfig:
    authenticated: bool = True
    secure_subdomain: bool = False
    extension: bool = False


# ---------------------------------------------------------------------------- requests


class Headers:
    """Request headers: lower-case names, repeated names kept; `h["name"]` is the last."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = [(k.lower(), v) for k, v in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in reversed(self._items):
            if k == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self._items if k == name]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self._items))


@dataclass
class IncomingHttpRequest:
    """An HTTP request forwarded by the http-server (reference section 2.2)."""

    method: str
    url: str
    bound_path: str
    headers: Headers
    url_params: dict[str, str]
    query_list: list[tuple[str, str]]
    source_socket_addr: str | None
    body: bytes

    @classmethod
    def from_proto(cls, req: http_pb2.IncomingHttpRequest, body: bytes) -> IncomingHttpRequest:
        return cls(
            method=req.method,
            url=req.url,
            bound_path=req.bound_path,
            headers=Headers((h.name, h.value) for h in req.headers),
            url_params=dict(req.url_params),
            query_list=[(q.name, q.value) for q in req.query_params],
            source_socket_addr=req.source_socket_addr if req.HasField("source_socket_addr") else None,
            body=body,
        )

    @property
    def query_params(self) -> dict[str, str]:
        """Decoded query parameters; for a repeated key the last wins (as Kinode)."""
        return dict(self.query_list)

    def path(self) -> str:
        """The URL path without its first segment (the process id): "/games/42"."""
        path = urlsplit(self.url).path
        rest = path.split("/", 2)
        return "/" + rest[2] if len(rest) > 2 else "/"

    def bound_path_stripped(self, strip: str | None = None) -> str:
        """bound_path without a leading "/<strip>" (process_lib's bound_path(Some(strip)))."""
        if strip and self.bound_path.startswith("/" + strip):
            return self.bound_path[len(strip) + 1:] or "/"
        return self.bound_path


@dataclass
class HttpResponse:
    """The reply to an HTTP request: status, headers (repeatable), and the body."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    content: bytes = b""

    def header(self, name: str, value: str) -> HttpResponse:
        self.headers.append((name, value))
        return self

    def set_headers(self, headers: Mapping[str, str]) -> HttpResponse:
        self.headers = list(headers.items())
        return self

    def set_status(self, status: int) -> HttpResponse:
        self.status = status
        return self

    def body(self, content: bytes | str) -> HttpResponse:
        self.content = content.encode() if isinstance(content, str) else content
        return self

    def to_proto(self) -> bytes:
        msg = http_pb2.HttpResponse(status=self.status)
        for name, value in self.headers:
            msg.headers.add(name=name, value=value)
        return msg.SerializeToString()


def send_response(proc: Process, status: int, headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
                  body: bytes = b"", *, to: Message | None = None) -> bool:
    """Answer the HTTP request being handled (the last request, or `to`); False when
    the kernel was not reachable (the answer is dropped, see `Process.respond`)."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    resp = HttpResponse(status, items, body)
    return proc.respond(resp.to_proto(), blob=Blob(resp.content), to=to)


def get_mime_type(filename: str) -> str:
    mime, _ = mimetypes.guess_type(filename)
    return mime or "application/octet-stream"


def _ws_type(name: str) -> int:
    if name not in WS_TYPES:
        raise ValueError(f"message type must be one of {', '.join(WS_TYPES)}, got {name!r}")
    return int(http_pb2.WsMessageType.Value(name))


_dropped_pushes = Every()


def send_ws_push(proc: Process | AsyncProcess, channel_id: int, message_type: str,
                 blob: bytes | Blob) -> bool:
    """Push one frame to a WebSocket this process owns (fire and forget, as process_lib).

    False when the kernel was not reachable (restarting, say): the frame is dropped,
    not raised, so a process pushing in a loop rides out a kernel restart."""
    action = Action()
    action.web_socket_push.channel_id = channel_id
    action.web_socket_push.message_type = _ws_type(message_type)  # type: ignore[assignment]
    try:
        proc.send_request(HTTP_SERVER, action.SerializeToString(),
                          blob=blob if isinstance(blob, Blob) else Blob(blob))
    except Offline as exc:
        dropped = _dropped_pushes.due()  # a push loop would repeat it for every frame
        if dropped:
            log.info("%s: dropped %d WebSocket push(es), the last to %d: %s", proc.our, dropped,
                     channel_id, exc.detail)
        return False
    return True


# ---------------------------------------------------------------------------- the server


HttpHandler = Callable[[IncomingHttpRequest], HttpResponse | tuple[HttpResponse, bytes | None]]
WsHandler = Callable[[int, str, Blob | None], None]


def bind_action(path: str, config: HttpBindingConfig) -> http_pb2.HttpServerAction:
    """Bind or SecureBind for a config (its static content travels as the blob)."""
    action = Action()
    timeout_ms = int(config.timeout * 1000) if config.timeout else 0
    cache = config.static_content is not None
    if config.secure_subdomain:
        sb = action.secure_bind
        sb.path, sb.cache, sb.timeout_ms = path, cache, timeout_ms
    else:
        b = action.bind
        b.path, b.cache, b.timeout_ms = path, cache, timeout_ms
        b.authenticated, b.local_only = config.authenticated, config.local_only
    return action


def ws_bind_action(path: str, config: WsBindingConfig) -> http_pb2.HttpServerAction:
    action = Action()
    if config.secure_subdomain:
        action.web_socket_secure_bind.path = path
        action.web_socket_secure_bind.extension = config.extension
    else:
        w = action.web_socket_bind
        w.path, w.authenticated, w.extension = path, config.authenticated, config.extension
    return action


def _path_action(variant: str, path: str) -> http_pb2.HttpServerAction:
    action = Action()
    getattr(action, variant).path = path
    return action


def _close_action(channel_id: int) -> http_pb2.HttpServerAction:
    action = Action()
    action.web_socket_close.channel_id = channel_id
    return action


def read_result(body: bytes) -> None:
    """Raise HttpServerError unless the http-server's answer is Ok."""
    result = http_pb2.HttpServerResult()
    try:
        result.ParseFromString(body)
    except Exception:
        raise HttpServerError("UnexpectedResponse", "not an HttpServerResult") from None
    which = result.WhichOneof("result")
    if which == "err":
        raise HttpServerError(http_pb2.HttpServerError.Kind.Name(result.err.kind), result.err.detail)
    if which != "ok":
        raise HttpServerError("UnexpectedResponse", "empty HttpServerResult")


def ui_files(directory: str | os.PathLike[str], roots: Iterable[str],
             config: HttpBindingConfig) -> list[tuple[str, HttpBindingConfig]]:
    """(path, static config) for every file under `directory`, index.html also at each
    root. (Fixed: with no roots, index.html is still bound at its own path; a nested
    */index.html never replaces the top one at the roots.)"""
    base = Path(directory)
    if not base.is_dir():
        raise FileNotFoundError(f"serve_ui: {base} is not a directory")
    out = []
    for file in sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = "/" + file.relative_to(base).as_posix()
        cfg = config.with_(static_content=Blob(file.read_bytes(), get_mime_type(file.name)))
        out.append((rel, cfg))
        if rel == "/index.html":
            out.extend((root, cfg) for root in roots)
    return out


def _file_config(file_path: str | os.PathLike[str], config: HttpBindingConfig | None) -> HttpBindingConfig:
    data = Path(file_path).read_bytes()
    return (config or HttpBindingConfig()).with_(static_content=Blob(data, get_mime_type(str(file_path))))


class _Bindings:
    """What both server classes keep locally and how they dispatch incoming messages."""

    proc: Process | AsyncProcess

    def __init__(self, proc: Process | AsyncProcess, timeout: float, wait_for_server: float) -> None:
        """`timeout`: how long each action may take. `wait_for_server`: how long an
        action waits for an http-server that is not running yet (processes may start
        before it, under honcho or after a node restart)."""
        self.proc = proc
        self.timeout = timeout
        self.wait_for_server = wait_for_server
        self.http_paths: dict[str, HttpBindingConfig] = {}
        self.ws_paths: dict[str, WsBindingConfig] = {}
        self.ws_channels: dict[str, set[int]] = {}

    def _respond(self, msg: Message, response: HttpResponse) -> None:
        raise NotImplementedError

    def handle_websocket_open(self, path: str, channel_id: int) -> None:
        self.ws_channels.setdefault(path, set()).add(channel_id)

    def handle_websocket_close(self, channel_id: int) -> None:
        for channels in self.ws_channels.values():
            channels.discard(channel_id)

    def get_ws_channels(self) -> dict[str, set[int]]:
        return {path: set(ch) for path, ch in self.ws_channels.items()}

    def ws_push_all_channels(self, path: str, message_type: str, blob: bytes | Blob) -> None:
        for channel_id in sorted(self.ws_channels.get(path, ())):
            send_ws_push(self.proc, channel_id, message_type, blob)

    def handle_request(self, msg: Message, http_handler: HttpHandler,
                       ws_handler: WsHandler | None = None, *,
                       on_open: Callable[[str, int], None] | None = None,
                       on_close: Callable[[int], None] | None = None) -> bool:
        """Dispatch a message from the http-server; False if it is not one.

        Http: http_handler(request) returns an HttpResponse (or (HttpResponse, body));
        the response is sent. WebSocketPush: ws_handler(channel_id, type name, blob).
        WebSocketOpen/Close keep `ws_channels` current, then call on_open(path,
        channel_id) / on_close(channel_id).
        """
        if msg.source != HTTP_SERVER or not msg.is_request:
            return False
        request = http_pb2.HttpServerRequest()
        try:
            request.ParseFromString(msg.body)
        except Exception:
            return False
        which = request.WhichOneof("request")
        if which == "http":
            req = IncomingHttpRequest.from_proto(request.http, msg.blob.bytes if msg.blob else b"")
            result = http_handler(req)
            if isinstance(result, tuple):
                response, body = result
                if body is not None:
                    response.content = body
            else:
                response = result
            self._respond(msg, response)
        elif which == "web_socket_open":
            opened = request.web_socket_open
            self.handle_websocket_open(opened.path, opened.channel_id)
            if on_open is not None:
                on_open(opened.path, opened.channel_id)
        elif which == "web_socket_close":
            self.handle_websocket_close(request.web_socket_close.channel_id)
            if on_close is not None:
                on_close(request.web_socket_close.channel_id)
        elif which == "web_socket_push":
            push = request.web_socket_push
            if ws_handler is not None:
                ws_handler(push.channel_id, http_pb2.WsMessageType.Name(push.message_type), msg.blob)
        else:
            return False
        return True


class HttpServer(_Bindings):
    """Bindings of one process, kept locally as well (process_lib's HttpServer), for the
    blocking stub. AsyncHttpServer is the same for porch.AsyncProcess."""

    proc: Process

    def __init__(self, proc: Process, timeout: float = 5.0, wait_for_server: float = 30.0) -> None:
        super().__init__(proc, timeout, wait_for_server)

    def _respond(self, msg: Message, response: HttpResponse) -> None:
        self.proc.respond(response.to_proto(), blob=Blob(response.content), to=msg)

    def _act(self, action: http_pb2.HttpServerAction, blob: Blob | None = None) -> None:
        give_up = time.monotonic() + self.wait_for_server
        delay = 0.0
        while True:
            try:
                reply = self.proc.send_and_await_response(HTTP_SERVER, action.SerializeToString(),
                                                          timeout=self.timeout, blob=blob)
                break
            except SendError as exc:
                delay = _retry_delay(exc, delay, give_up, self.proc.our)
                time.sleep(delay)
        read_result(reply.body)

    # -- HTTP -------------------------------------------------------------------------

    def bind_http_path(self, path: str, config: HttpBindingConfig | None = None) -> None:
        config = config or HttpBindingConfig()
        self._act(bind_action(path, config), config.static_content)
        self.http_paths[path] = config

    def bind_http_static_path(self, path: str, authenticated: bool, local_only: bool,
                              content_type: str | None, content: bytes) -> None:
        self.bind_http_path(path, HttpBindingConfig(authenticated, local_only, False,
                                                    Blob(content, content_type)))

    def secure_bind_http_path(self, path: str) -> None:
        self.bind_http_path(path, HttpBindingConfig(secure_subdomain=True))

    def modify_http_path(self, path: str, config: HttpBindingConfig) -> None:
        """Rebind a path this process bound with a new config (process_lib's, fixed)."""
        if path not in self.http_paths:
            raise HttpServerError("MalformedRequest", f"{path} is not bound by this process")
        self.bind_http_path(path, config)

    def bind_multiple_http_paths(self, paths: Iterable[str],
                                 config: HttpBindingConfig | None = None) -> None:
        done: list[str] = []
        try:
            for path in paths:
                self.bind_http_path(path, config)
                done.append(path)
        except HttpServerError:
            for path in done:
                self.unbind_http_path(path)
            raise

    def unbind_http_path(self, path: str) -> None:
        self._act(_path_action("unbind", path))
        self.http_paths.pop(path, None)

    def serve_file(self, file_path: str | os.PathLike[str], paths: Iterable[str],
                   config: HttpBindingConfig | None = None) -> None:
        """Bind each path to the file's bytes as static content (mime from its name).

        process_lib reads the package's VFS; porch processes read their own disk."""
        cfg = _file_config(file_path, config)
        for path in paths:
            self.bind_http_path(path, cfg)

    def serve_ui(self, directory: str | os.PathLike[str], roots: Iterable[str] = ("/",),
                 config: HttpBindingConfig | None = None) -> list[str]:
        """Bind every file under `directory` (see ui_files); returns the paths bound."""
        bound = []
        for path, cfg in ui_files(directory, roots, config or HttpBindingConfig()):
            self.bind_http_path(path, cfg)
            bound.append(path)
        return bound

    # -- WebSockets ---------------------------------------------------------------------

    def bind_ws_path(self, path: str, config: WsBindingConfig | None = None) -> None:
        config = config or WsBindingConfig()
        self._act(ws_bind_action(path, config))
        self.ws_paths[path] = config

    def secure_bind_ws_path(self, path: str) -> None:
        self.bind_ws_path(path, WsBindingConfig(secure_subdomain=True))

    def modify_ws_path(self, path: str, config: WsBindingConfig) -> None:
        if path not in self.ws_paths:
            raise HttpServerError("MalformedRequest", f"{path} is not bound by this process")
        self.bind_ws_path(path, config)

    def unbind_ws_path(self, path: str) -> None:
        self._act(_path_action("web_socket_unbind", path))
        self.ws_paths.pop(path, None)

    def close_ws(self, channel_id: int) -> None:
        """Close a socket this process owns (the server answers WsChannelNotFound for
        someone else's)."""
        self._act(_close_action(channel_id))
        self.handle_websocket_close(channel_id)


class AsyncHttpServer(_Bindings):
    """HttpServer for porch.AsyncProcess: the actions are coroutines; handle_request is
    the same (call it from the process's on_request handler)."""

    proc: AsyncProcess

    def __init__(self, proc: AsyncProcess, timeout: float = 5.0, wait_for_server: float = 30.0) -> None:
        super().__init__(proc, timeout, wait_for_server)

    def _respond(self, msg: Message, response: HttpResponse) -> None:
        self.proc.respond(msg, response.to_proto(), blob=Blob(response.content))

    async def _act(self, action: http_pb2.HttpServerAction, blob: Blob | None = None) -> None:
        give_up = time.monotonic() + self.wait_for_server
        delay = 0.0
        while True:
            try:
                reply = await self.proc.request(HTTP_SERVER, action.SerializeToString(),
                                                timeout=self.timeout, blob=blob)
                break
            except SendError as exc:
                delay = _retry_delay(exc, delay, give_up, self.proc.our)
                await asyncio.sleep(delay)
        read_result(reply.body)

    async def bind_http_path(self, path: str, config: HttpBindingConfig | None = None) -> None:
        config = config or HttpBindingConfig()
        await self._act(bind_action(path, config), config.static_content)
        self.http_paths[path] = config

    async def unbind_http_path(self, path: str) -> None:
        await self._act(_path_action("unbind", path))
        self.http_paths.pop(path, None)

    async def serve_file(self, file_path: str | os.PathLike[str], paths: Iterable[str],
                         config: HttpBindingConfig | None = None) -> None:
        cfg = _file_config(file_path, config)
        for path in paths:
            await self.bind_http_path(path, cfg)

    async def serve_ui(self, directory: str | os.PathLike[str], roots: Iterable[str] = ("/",),
                       config: HttpBindingConfig | None = None) -> list[str]:
        bound = []
        for path, cfg in ui_files(directory, roots, config or HttpBindingConfig()):
            await self.bind_http_path(path, cfg)
            bound.append(path)
        return bound

    async def bind_ws_path(self, path: str, config: WsBindingConfig | None = None) -> None:
        config = config or WsBindingConfig()
        await self._act(ws_bind_action(path, config))
        self.ws_paths[path] = config

    async def unbind_ws_path(self, path: str) -> None:
        await self._act(_path_action("web_socket_unbind", path))
        self.ws_paths.pop(path, None)

    async def close_ws(self, channel_id: int) -> None:
        await self._act(_close_action(channel_id))
        self.handle_websocket_close(channel_id)


def _retry_delay(exc: SendError, delay: float, give_up: float, who: str) -> float:
    """The wait before trying an action again after having waited `delay` (0 at the
    first failure): 50 ms doubling to 1 s. Or raise: only an http-server that is not
    running yet (Offline, never delivered) is waited for, until give_up."""
    if not isinstance(exc, Offline):
        kind = "Timeout" if exc.kind == "Timeout" else "UnexpectedResponse"
        raise HttpServerError(kind, str(exc)) from exc
    wait = min(delay * 2, 1.0) if delay else 0.05
    if exc.delivered or time.monotonic() + wait > give_up:
        raise HttpServerError("UnexpectedResponse", str(exc)) from exc
    if not delay:
        log.info("%s: waiting for the http-server to start", who)
    return wait

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

`AsyncHttpServer` is the twin for `porch.AsyncProcess`: the same methods with the same
arguments, the ones that talk to the http-server being coroutines. Each operation is
written once, as a plan of actions (`_Operations`) that the blocking class runs with
blocking calls and the asyncio class awaits; tests/unit/test_twin_apis.py holds the
signatures together.

`handle_request` never lets an app's handler take the process down: a handler that
raises (or returns something that is not an HttpResponse) is logged with its traceback
and the request answered 500; a WebSocket handler that raises is logged and the socket
stays open.

Fixes of process_lib's known bugs: `modify_http_path` sends the static content it was
given (it always failed with NoBlob) and honours `secure_subdomain`; `serve_ui` binds
index.html at its own path even with no roots.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from porch.address import HTTP_SERVER
from porch.http.configs import HttpBindingConfig, WsBindingConfig
from porch.http.headers import Headers
from porch.http.messages import (
    HttpResponse,
    HttpServerError,
    HttpServerRequest,
    IncomingHttpRequest,
    parse_request,
)
from porch.http.ws import WS_TYPES, WsClose, WsOpen, WsPush, ws_type
from porch.node.logs import REQUEST_ID
from porch.process.aio import AsyncProcess
from porch.process.blocking import Process
from porch.process.message import Blob, Message, Offline, SendError
from porch.throttle import Every
from porch.wire import http_pb2

__all__ = [
    "WS_TYPES",
    "AsyncHttpServer",
    "Headers",
    "HttpBindingConfig",
    "HttpResponse",
    "HttpServer",
    "HttpServerError",
    "HttpServerRequest",
    "IncomingHttpRequest",
    "WsBindingConfig",
    "WsClose",
    "WsOpen",
    "WsPush",
    "get_mime_type",
    "parse_request",
    "send_response",
    "send_ws_push",
    "ws_push_all_channels",
]

log = logging.getLogger("porch.http")
Action = http_pb2.HttpServerAction
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

INTERNAL_ERROR = "internal error\n"


# ---------------------------------------------------------------------------- free functions


def send_response(proc: Process | AsyncProcess, status: int,
                  headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
                  body: bytes = b"", *, to: Message | None = None) -> bool:
    """Answer the HTTP request `to` (with a blocking Process, by default the last
    request it received; an AsyncProcess needs `to`). False when the kernel was not
    reachable (the answer is dropped, see `porch.Process.respond`)."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    resp = HttpResponse(status, items, body)
    return proc.respond(to, resp.to_proto(), blob=Blob(resp.content))


def get_mime_type(filename: str) -> str:
    mime, _ = mimetypes.guess_type(filename)
    return mime or "application/octet-stream"


_dropped_pushes = Every()


def send_ws_push(proc: Process | AsyncProcess, channel_id: int, message_type: str,
                 blob: bytes | Blob) -> bool:
    """Push one frame to a WebSocket this process owns (fire and forget, as process_lib).

    False when the kernel was not reachable (restarting, say): the frame is dropped,
    not raised, so a process pushing in a loop rides out a kernel restart."""
    kind = ws_type(message_type)
    held = proc.held_sockets
    if held is not None and held.push(channel_id, kind, blob.bytes if isinstance(blob, Blob) else blob):
        return True  # a socket this process holds (a direct binding): written here
    action = Action()
    action.web_socket_push.channel_id = channel_id
    action.web_socket_push.message_type = kind  # type: ignore[assignment]
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


def ws_push_all_channels(proc: Process | AsyncProcess, ws_channels: Mapping[str, Iterable[int]],
                         path: str, message_type: str, blob: bytes | Blob) -> None:
    """Push one frame to every channel open on `path` (process_lib's free function; the
    servers' method of the same name passes their own `ws_channels`)."""
    for channel_id in sorted(ws_channels.get(path, ())):
        send_ws_push(proc, channel_id, message_type, blob)


# ---------------------------------------------------------------------------- actions


def bind_action(path: str, config: HttpBindingConfig, direct: bool = False) -> http_pb2.HttpServerAction:
    """Bind or SecureBind for a config (its static content travels as the blob);
    `direct`: its requests may come on a direct link (the config asks for it and the
    process can take one)."""
    action = Action()
    timeout_ms = int(config.timeout * 1000) if config.timeout else 0
    cache = config.static_content is not None
    if config.secure_subdomain:
        sb = action.secure_bind
        sb.path, sb.cache, sb.timeout_ms, sb.direct = path, cache, timeout_ms, direct
    else:
        b = action.bind
        b.path, b.cache, b.timeout_ms, b.direct = path, cache, timeout_ms, direct
        b.authenticated, b.local_only = config.authenticated, config.local_only
    return action


def ws_bind_action(path: str, config: WsBindingConfig, direct: bool = False) -> http_pb2.HttpServerAction:
    """`direct`: the binding's sockets are handed to the process (its config asks for
    it and the process can hold them)."""
    action = Action()
    if config.secure_subdomain:
        sb = action.web_socket_secure_bind
        sb.path, sb.extension, sb.direct = path, config.extension, direct
    else:
        w = action.web_socket_bind
        w.path, w.authenticated, w.extension, w.direct = path, config.authenticated, config.extension, direct
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


# ---------------------------------------------------------------------------- handling


HttpHandler = Callable[[IncomingHttpRequest], HttpResponse | tuple[HttpResponse, bytes | None]]
WsHandler = Callable[[int, str, Blob | None], None]

# One action for the http-server, with the blob it carries; a plan yields them in turn.
Step = tuple[http_pb2.HttpServerAction, Blob | None]
Plan = Generator[Step, None, T]


def _as_response(result: object) -> HttpResponse:
    """What an http_handler returned, as the HttpResponse to send."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], HttpResponse):
        response: HttpResponse = result[0]
        if result[1] is not None:
            response.body(result[1])
        return response
    if isinstance(result, HttpResponse):
        return result
    raise TypeError(f"the HTTP handler returned {type(result).__name__}, not an HttpResponse "
                    "or (HttpResponse, body)")


def _internal_error() -> HttpResponse:
    return HttpResponse(500, [("Content-Type", "text/plain; charset=utf-8")], INTERNAL_ERROR.encode())


class _Operations:
    """What both servers keep locally, how they dispatch incoming messages, and every
    operation on the http-server, written once as a plan of actions (`_run` in each
    server carries a plan out, blocking or awaiting)."""

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

    # -- local state and dispatch (the same, synchronous, in both servers) --------------

    def handle_websocket_open(self, path: str, channel_id: int) -> None:
        self.ws_channels.setdefault(path, set()).add(channel_id)

    def handle_websocket_close(self, channel_id: int) -> None:
        for channels in self.ws_channels.values():
            channels.discard(channel_id)

    def get_ws_channels(self) -> dict[str, set[int]]:
        return {path: set(ch) for path, ch in self.ws_channels.items()}

    def ws_push_all_channels(self, path: str, message_type: str, blob: bytes | Blob) -> None:
        """Push one frame to every channel open on `path` (fire and forget)."""
        ws_push_all_channels(self.proc, self.ws_channels, path, message_type, blob)

    def parse_request(self, msg: Message) -> HttpServerRequest:
        """`porch.http.server.parse_request` (process_lib has it as a method)."""
        return parse_request(msg)

    def handle_request(self, msg: Message, http_handler: HttpHandler,
                       ws_handler: WsHandler | None = None, *,
                       on_open: Callable[[str, int], None] | None = None,
                       on_close: Callable[[int], None] | None = None) -> bool:
        """Dispatch a message from the http-server; False if it is not one.

        Http: http_handler(request) returns an HttpResponse (or (HttpResponse, body));
        the response is sent. If the handler raises, or returns something else, the
        request is answered 500 and the traceback logged: the process goes on.
        WebSocketPush: ws_handler(channel_id, type name, blob). WebSocketOpen/Close
        keep `ws_channels` current, then call on_open(path, channel_id) /
        on_close(channel_id). An exception in one of these is logged and the socket
        stays open.
        """
        try:
            request = parse_request(msg)
        except HttpServerError:
            return False
        if isinstance(request, IncomingHttpRequest):
            self._answer(msg, request, http_handler)
        elif isinstance(request, WsOpen):
            self.handle_websocket_open(request.path, request.channel_id)
            if on_open is not None:
                self._guarded("on_open", request.channel_id, on_open, request.path, request.channel_id)
        elif isinstance(request, WsClose):
            self.handle_websocket_close(request.channel_id)
            if on_close is not None:
                self._guarded("on_close", request.channel_id, on_close, request.channel_id)
        elif ws_handler is not None:
            self._guarded("the WebSocket handler", request.channel_id, ws_handler,
                          request.channel_id, request.message_type, request.blob)
        return True

    def _answer(self, msg: Message, request: IncomingHttpRequest, http_handler: HttpHandler) -> None:
        # While the handler runs, log lines carry the request's id (porch.node.logs).
        token = REQUEST_ID.set(request.request_id)
        try:
            response = _as_response(http_handler(request))
            body = response.to_proto()
        except Exception:
            log.exception("%s: the HTTP handler failed on %s %s; answered 500",
                          self.proc.our, request.method, request.url)
            response = _internal_error()
            body = response.to_proto()
        finally:
            REQUEST_ID.reset(token)
        self.proc.respond(msg, body, blob=Blob(response.content))

    def _guarded(self, what: str, channel_id: int, call: Callable[..., object], *args: Any) -> None:
        try:
            call(*args)
        except Exception:
            log.exception("%s: %s failed on WebSocket channel %d; the socket stays open",
                          self.proc.our, what, channel_id)

    # -- the operations, as plans --------------------------------------------------------

    def _bind_http_path(self, path: str, config: HttpBindingConfig | None) -> Plan[None]:
        config = config or HttpBindingConfig()
        direct = config.direct and config.static_content is None and self.proc.accept_direct()
        yield bind_action(path, config, direct), config.static_content
        self.http_paths[path] = config

    def _modify_http_path(self, path: str, config: HttpBindingConfig) -> Plan[None]:
        if path not in self.http_paths:
            raise HttpServerError("MalformedRequest", f"{path} is not bound by this process")
        yield from self._bind_http_path(path, config)

    def _bind_multiple_http_paths(self, paths: Iterable[str],
                                  config: HttpBindingConfig | None) -> Plan[None]:
        done: list[str] = []
        try:
            for path in paths:
                yield from self._bind_http_path(path, config)
                done.append(path)
        except HttpServerError:
            for path in done:
                yield from self._unbind_http_path(path)
            raise

    def _unbind_http_path(self, path: str) -> Plan[None]:
        yield _path_action("unbind", path), None
        self.http_paths.pop(path, None)

    def _serve_file(self, file_path: str | os.PathLike[str], paths: Iterable[str],
                    config: HttpBindingConfig | None) -> Plan[None]:
        cfg = _file_config(file_path, config)
        for path in paths:
            yield from self._bind_http_path(path, cfg)

    def _serve_ui(self, directory: str | os.PathLike[str], roots: Iterable[str],
                  config: HttpBindingConfig | None) -> Plan[list[str]]:
        bound = []
        for path, cfg in ui_files(directory, roots, config or HttpBindingConfig()):
            yield from self._bind_http_path(path, cfg)
            bound.append(path)
        return bound

    def _bind_ws_path(self, path: str, config: WsBindingConfig | None) -> Plan[None]:
        config = config or WsBindingConfig()
        direct = config.direct and not config.extension and self.proc.accept_direct()
        yield ws_bind_action(path, config, direct), None
        self.ws_paths[path] = config

    def _modify_ws_path(self, path: str, config: WsBindingConfig) -> Plan[None]:
        if path not in self.ws_paths:
            raise HttpServerError("MalformedRequest", f"{path} is not bound by this process")
        yield from self._bind_ws_path(path, config)

    def _unbind_ws_path(self, path: str) -> Plan[None]:
        yield _path_action("web_socket_unbind", path), None
        self.ws_paths.pop(path, None)

    def _close_ws(self, channel_id: int) -> Plan[None]:
        held = self.proc.held_sockets
        if held is None or not held.close(channel_id):  # else closed here (a direct binding)
            yield _close_action(channel_id), None
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


class HttpServer(_Operations):
    """Bindings of one process, kept locally as well (process_lib's HttpServer), for the
    blocking stub. AsyncHttpServer is the same for porch.AsyncProcess."""

    proc: Process

    def __init__(self, proc: Process, timeout: float = 5.0, wait_for_server: float = 30.0) -> None:
        super().__init__(proc, timeout, wait_for_server)

    def _act(self, action: http_pb2.HttpServerAction, blob: Blob | None) -> None:
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

    def _run(self, plan: Plan[T]) -> T:
        """Carry out a plan: each action in turn, its failure thrown back into the plan."""
        try:
            step = next(plan)
            while True:
                try:
                    self._act(*step)
                except HttpServerError as exc:
                    step = plan.throw(exc)
                else:
                    step = plan.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    # -- HTTP -------------------------------------------------------------------------

    def bind_http_path(self, path: str, config: HttpBindingConfig | None = None) -> None:
        """Bind `path` (under this process's id) with `config` (process_lib's defaults
        when None); its static content, if any, is served by the http-server itself."""
        return self._run(self._bind_http_path(path, config))

    def bind_http_static_path(self, path: str, authenticated: bool, local_only: bool,
                              content_type: str | None, content: bytes) -> None:
        """Bind `path` to static content (process_lib's signature)."""
        config = HttpBindingConfig(authenticated, local_only, False, Blob(content, content_type))
        return self._run(self._bind_http_path(path, config))

    def secure_bind_http_path(self, path: str) -> None:
        """Bind `path` on this app's secure subdomain."""
        return self._run(self._bind_http_path(path, HttpBindingConfig(secure_subdomain=True)))

    def modify_http_path(self, path: str, config: HttpBindingConfig) -> None:
        """Rebind a path this process bound with a new config (process_lib's, fixed:
        the new static content is sent and `secure_subdomain` honoured).
        MalformedRequest for a path it did not bind."""
        return self._run(self._modify_http_path(path, config))

    def bind_multiple_http_paths(self, paths: Iterable[str],
                                 config: HttpBindingConfig | None = None) -> None:
        """Bind each path; on the first failure unbind those already bound and raise."""
        return self._run(self._bind_multiple_http_paths(paths, config))

    def unbind_http_path(self, path: str) -> None:
        """Unbind a path this process bound (Ok for one it never bound, as Kinode)."""
        return self._run(self._unbind_http_path(path))

    def serve_file(self, file_path: str | os.PathLike[str], paths: Iterable[str],
                   config: HttpBindingConfig | None = None) -> None:
        """Bind each path to the file's bytes as static content (mime from its name).

        process_lib reads the package's VFS; a porch process reads its own disk (a
        relative path is relative to its working directory)."""
        return self._run(self._serve_file(file_path, paths, config))

    def serve_file_raw_path(self, file_path: str | os.PathLike[str], paths: Iterable[str],
                            config: HttpBindingConfig | None = None) -> None:
        """process_lib's serve_file for an absolute VFS path; with no package drive to
        be relative to, the same as serve_file here."""
        return self._run(self._serve_file(file_path, paths, config))

    def serve_ui(self, directory: str | os.PathLike[str], roots: Iterable[str] = ("/",),
                 config: HttpBindingConfig | None = None) -> list[str]:
        """Bind every file under `directory` as static content at its relative path,
        index.html also at each root; returns the paths bound."""
        return self._run(self._serve_ui(directory, roots, config))

    # -- WebSockets ---------------------------------------------------------------------

    def bind_ws_path(self, path: str, config: WsBindingConfig | None = None) -> None:
        """Bind a WebSocket path with `config` (process_lib's defaults when None)."""
        return self._run(self._bind_ws_path(path, config))

    def secure_bind_ws_path(self, path: str) -> None:
        """Bind a WebSocket path on this app's secure subdomain."""
        return self._run(self._bind_ws_path(path, WsBindingConfig(secure_subdomain=True)))

    def modify_ws_path(self, path: str, config: WsBindingConfig) -> None:
        """Rebind a WebSocket path this process bound (MalformedRequest otherwise)."""
        return self._run(self._modify_ws_path(path, config))

    def unbind_ws_path(self, path: str) -> None:
        """Unbind a WebSocket path this process bound; its open sockets close."""
        return self._run(self._unbind_ws_path(path))

    def close_ws(self, channel_id: int) -> None:
        """Close a socket this process owns (the server answers WsChannelNotFound for
        someone else's)."""
        return self._run(self._close_ws(channel_id))


def _twin(blocking: Callable[..., Any]) -> Callable[[F], F]:
    """Give an AsyncHttpServer method its blocking twin's docstring."""
    def give(method: F) -> F:
        method.__doc__ = blocking.__doc__
        return method
    return give


class AsyncHttpServer(_Operations):
    """HttpServer for porch.AsyncProcess: the same methods, those that talk to the
    http-server being coroutines; handle_request is the same (call it from the
    process's on_request handler)."""

    proc: AsyncProcess

    def __init__(self, proc: AsyncProcess, timeout: float = 5.0, wait_for_server: float = 30.0) -> None:
        super().__init__(proc, timeout, wait_for_server)

    async def _act(self, action: http_pb2.HttpServerAction, blob: Blob | None) -> None:
        give_up = time.monotonic() + self.wait_for_server
        delay = 0.0
        while True:
            try:
                reply = await self.proc.send_and_await_response(
                    HTTP_SERVER, action.SerializeToString(), timeout=self.timeout, blob=blob)
                break
            except SendError as exc:
                delay = _retry_delay(exc, delay, give_up, self.proc.our)
                await asyncio.sleep(delay)
        read_result(reply.body)

    async def _run(self, plan: Plan[T]) -> T:
        try:
            step = next(plan)
            while True:
                try:
                    await self._act(*step)
                except HttpServerError as exc:
                    step = plan.throw(exc)
                else:
                    step = plan.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    @_twin(HttpServer.bind_http_path)
    async def bind_http_path(self, path: str, config: HttpBindingConfig | None = None) -> None:
        return await self._run(self._bind_http_path(path, config))

    @_twin(HttpServer.bind_http_static_path)
    async def bind_http_static_path(self, path: str, authenticated: bool, local_only: bool,
                                    content_type: str | None, content: bytes) -> None:
        config = HttpBindingConfig(authenticated, local_only, False, Blob(content, content_type))
        return await self._run(self._bind_http_path(path, config))

    @_twin(HttpServer.secure_bind_http_path)
    async def secure_bind_http_path(self, path: str) -> None:
        return await self._run(self._bind_http_path(path, HttpBindingConfig(secure_subdomain=True)))

    @_twin(HttpServer.modify_http_path)
    async def modify_http_path(self, path: str, config: HttpBindingConfig) -> None:
        return await self._run(self._modify_http_path(path, config))

    @_twin(HttpServer.bind_multiple_http_paths)
    async def bind_multiple_http_paths(self, paths: Iterable[str],
                                       config: HttpBindingConfig | None = None) -> None:
        return await self._run(self._bind_multiple_http_paths(paths, config))

    @_twin(HttpServer.unbind_http_path)
    async def unbind_http_path(self, path: str) -> None:
        return await self._run(self._unbind_http_path(path))

    @_twin(HttpServer.serve_file)
    async def serve_file(self, file_path: str | os.PathLike[str], paths: Iterable[str],
                         config: HttpBindingConfig | None = None) -> None:
        return await self._run(self._serve_file(file_path, paths, config))

    @_twin(HttpServer.serve_file_raw_path)
    async def serve_file_raw_path(self, file_path: str | os.PathLike[str], paths: Iterable[str],
                                  config: HttpBindingConfig | None = None) -> None:
        return await self._run(self._serve_file(file_path, paths, config))

    @_twin(HttpServer.serve_ui)
    async def serve_ui(self, directory: str | os.PathLike[str], roots: Iterable[str] = ("/",),
                       config: HttpBindingConfig | None = None) -> list[str]:
        return await self._run(self._serve_ui(directory, roots, config))

    @_twin(HttpServer.bind_ws_path)
    async def bind_ws_path(self, path: str, config: WsBindingConfig | None = None) -> None:
        return await self._run(self._bind_ws_path(path, config))

    @_twin(HttpServer.secure_bind_ws_path)
    async def secure_bind_ws_path(self, path: str) -> None:
        return await self._run(self._bind_ws_path(path, WsBindingConfig(secure_subdomain=True)))

    @_twin(HttpServer.modify_ws_path)
    async def modify_ws_path(self, path: str, config: WsBindingConfig) -> None:
        return await self._run(self._modify_ws_path(path, config))

    @_twin(HttpServer.unbind_ws_path)
    async def unbind_ws_path(self, path: str) -> None:
        return await self._run(self._unbind_ws_path(path))

    @_twin(HttpServer.close_ws)
    async def close_ws(self, channel_id: int) -> None:
        return await self._run(self._close_ws(channel_id))


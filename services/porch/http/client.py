"""Outgoing HTTP and WebSockets from a process: kinode_process_lib::http::client in Python.

    import porch
    from porch.http.client import send_request_await_response, HttpClientError

    proc = porch.Process()                     # needs capabilities = ["http-client:distro:sys"]
    resp = send_request_await_response(proc, "GET", "https://example.com/", timeout=10)
    print(resp.status, resp.headers.get("content-type"), len(resp.body))

The calls mirror docs/kinode.md §7.2. One deliberate difference: when the kernel
answers instead of the http-client (Kinode turns every such SendError into
`ExecuteRequestFailed("http-client timed out")`, and into WsOpenFailed/WsCloseFailed for
WebSockets), the HttpClientError raised here keeps the kernel's variant as its kind:
"Timeout" (no answer by the deadline), "Offline" (the http-client is not running, or
died with the request pending), "NoCapability" (the node config does not grant
http-client:distro:sys). The SendError itself is in `.send_error` and `__cause__`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from porch.address import HTTP_CLIENT
from porch.http.headers import Headers
from porch.http.ws import WS_TYPES, WsClose, WsPush, ws_type, ws_type_name
from porch.process.aio import AsyncProcess
from porch.process.blocking import Process
from porch.process.message import Blob, Message, PorchError, SendError
from porch.wire import http_pb2

__all__ = [
    "WS_TYPES",
    "Headers",
    "HttpClientError",
    "HttpResponse",
    "WsClose",
    "WsPush",
    "close_ws_connection",
    "close_ws_connection_async",
    "open_ws_connection",
    "open_ws_connection_async",
    "parse_response",
    "parse_ws_message",
    "send_request",
    "send_request_await_response",
    "send_request_await_response_async",
    "send_ws_client_push",
]

Action = http_pb2.HttpClientAction
DEFAULT_TIMEOUT_S = 30.0
WS_TIMEOUT_S = 5.0  # process_lib's await for WebSocket open/close

HeaderPairs = Mapping[str, str] | Iterable[tuple[str, str]]


class HttpClientError(PorchError):
    """A request the http-client refused or could not complete.

    `kind` is the HttpClientError variant (MalformedRequest, BadMethod, BadUrl,
    BadVersion, BuildRequestFailed, ExecuteRequestFailed, WsOpenFailed,
    WsPushUnknownChannel, WsPushNoBlob, WsPushBadText, WsCloseFailed, and porch's
    ResponseTooLarge, Denied, Timeout), the kernel's SendError variant (Timeout,
    Offline, NoCapability), or UnexpectedResponse. The variant's fields are attributes.
    """

    def __init__(self, kind: str, *, method: str = "", url: str = "", version: str = "",
                 channel_id: int = 0, message: str = "", send_error: SendError | None = None) -> None:
        self.kind = kind
        self.method = method
        self.url = url
        self.version = version
        self.channel_id = channel_id
        self.message = message
        self.send_error = send_error
        fields = ", ".join(f"{k}={v!r}" for k, v in (("method", method), ("url", url), ("version", version),
                                                      ("channel_id", channel_id)) if v)
        detail = "; ".join(x for x in (fields, message) if x)
        super().__init__(f"{kind}: {detail}" if detail else kind)

    @classmethod
    def from_wire(cls, err: http_pb2.HttpClientError) -> HttpClientError:
        return cls(http_pb2.HttpClientError.Kind.Name(err.kind), method=err.method, url=err.url,
                   version=err.version, channel_id=err.channel_id, message=err.message)

    @classmethod
    def from_send_error(cls, exc: SendError, *, url: str = "", channel_id: int = 0) -> HttpClientError:
        return cls(exc.kind, url=url, channel_id=channel_id, message=exc.detail, send_error=exc)


@dataclass(frozen=True)
class HttpResponse:
    """The remote's answer, whatever its status (4xx and 5xx are answers, not errors)."""

    status: int
    headers: Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------- encoding


def _pairs(headers: HeaderPairs | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def http_action(method: str, url: str, headers: HeaderPairs | None = None,
                version: str | None = None) -> bytes:
    """The body of an `Http(OutgoingHttpRequest)` action."""
    action = Action()
    req = action.http
    req.method = method
    req.url = url
    if version is not None:
        req.version = version
    for name, value in _pairs(headers):
        req.headers.add(name=name, value=value)
    return action.SerializeToString()


def parse_response(msg: Message) -> HttpResponse:
    """The http-client's answer to an Http action as an HttpResponse, or HttpClientError."""
    result = _result(msg)
    if result.WhichOneof("result") == "err":
        raise HttpClientError.from_wire(result.err)
    if result.ok.WhichOneof("response") != "http":
        raise HttpClientError("UnexpectedResponse", message="WebSocketAck in answer to an HTTP request")
    http = result.ok.http
    return HttpResponse(http.status, Headers((h.name, h.value) for h in http.headers),
                        msg.blob.bytes if msg.blob is not None else b"")


def _check_ack(msg: Message) -> None:
    result = _result(msg)
    if result.WhichOneof("result") == "err":
        raise HttpClientError.from_wire(result.err)
    if result.ok.WhichOneof("response") != "web_socket_ack":
        raise HttpClientError("UnexpectedResponse", message="expected WebSocketAck")


def _result(msg: Message) -> http_pb2.HttpClientResult:
    result = http_pb2.HttpClientResult()
    try:
        result.ParseFromString(msg.body)
    except DecodeError as exc:
        raise HttpClientError("UnexpectedResponse", message=f"undecodable answer: {exc}") from None
    if result.WhichOneof("result") is None:
        raise HttpClientError("UnexpectedResponse", message="empty answer")
    return result


# ---------------------------------------------------------------------------- HTTP


def send_request(proc: Process | AsyncProcess, method: str, url: str,
                 headers: HeaderPairs | None = None, timeout: float | None = None,
                 body: bytes | str = b"", *, version: str | None = None) -> int:
    """Send without waiting; returns the request id. With `timeout` (seconds) the answer
    arrives later from `proc.await_message()` (read it with `parse_response`); without,
    none is sent (fire and forget). The body always travels as a blob (as process_lib).
    `version` ("HTTP/1.0", "HTTP/1.1") is the HTTP version to speak; process_lib's
    helpers leave it unset (HTTP/1.1)."""
    return proc.send_request(HTTP_CLIENT, http_action(method, url, headers, version), blob=body,
                             expects_response=timeout)


def send_request_await_response(proc: Process, method: str, url: str,
                                headers: HeaderPairs | None = None,
                                timeout: float = DEFAULT_TIMEOUT_S,
                                body: bytes | str = b"", *, version: str | None = None) -> HttpResponse:
    """Make the request and block for the response (any status) or HttpClientError."""
    try:
        msg = proc.send_and_await_response(HTTP_CLIENT, http_action(method, url, headers, version),
                                           timeout=timeout, blob=body)
    except SendError as exc:
        raise HttpClientError.from_send_error(exc, url=url) from exc
    return parse_response(msg)


async def send_request_await_response_async(proc: AsyncProcess, method: str, url: str,
                                            headers: HeaderPairs | None = None,
                                            timeout: float = DEFAULT_TIMEOUT_S,
                                            body: bytes | str = b"", *,
                                            version: str | None = None) -> HttpResponse:
    """The asyncio form: many requests can be awaited at once."""
    try:
        msg = await proc.send_and_await_response(HTTP_CLIENT, http_action(method, url, headers, version),
                                                 timeout=timeout, blob=body)
    except SendError as exc:
        raise HttpClientError.from_send_error(exc, url=url) from exc
    return parse_response(msg)


# ---------------------------------------------------------------------------- WebSockets


def ws_open_action(url: str, headers: HeaderPairs | None, channel_id: int) -> bytes:
    action = Action()
    op = action.web_socket_open
    op.url = url
    op.channel_id = channel_id
    for name, value in _pairs(headers):
        op.headers.add(name=name, value=value)
    return action.SerializeToString()


def ws_push_action(channel_id: int, message_type: str | int) -> bytes:
    action = Action()
    action.web_socket_push.channel_id = channel_id
    action.web_socket_push.message_type = ws_type(message_type)  # type: ignore[assignment]
    return action.SerializeToString()


def ws_close_action(channel_id: int) -> bytes:
    action = Action()
    action.web_socket_close.channel_id = channel_id
    return action.SerializeToString()


def open_ws_connection(proc: Process, url: str, headers: HeaderPairs | None = None,
                       channel_id: int = 0, timeout: float = WS_TIMEOUT_S) -> None:
    """Open a WebSocket to `url` as `channel_id` (chosen by the caller, per process).
    Incoming frames then arrive as Requests from http-client:distro:sys (read them with
    `parse_ws_message`), each with the id of this open request."""
    try:
        msg = proc.send_and_await_response(HTTP_CLIENT, ws_open_action(url, headers, channel_id),
                                           timeout=timeout)
    except SendError as exc:
        raise HttpClientError.from_send_error(exc, url=url) from exc
    _check_ack(msg)


async def open_ws_connection_async(proc: AsyncProcess, url: str, headers: HeaderPairs | None = None,
                                   channel_id: int = 0, timeout: float = WS_TIMEOUT_S) -> None:
    try:
        msg = await proc.send_and_await_response(HTTP_CLIENT, ws_open_action(url, headers, channel_id),
                                                 timeout=timeout)
    except SendError as exc:
        raise HttpClientError.from_send_error(exc, url=url) from exc
    _check_ack(msg)


def send_ws_client_push(proc: Process | AsyncProcess, channel_id: int, message_type: str | int,
                        blob: bytes | str | Blob | None = None) -> None:
    """Fire and forget (as process_lib): errors such as an unknown channel are not
    reported. Text and Binary need a blob; Ping/Pong/Close may carry one (Close: a
    2-byte code then a UTF-8 reason)."""
    proc.send_request(HTTP_CLIENT, ws_push_action(channel_id, message_type), blob=blob)


def close_ws_connection(proc: Process, channel_id: int, timeout: float = WS_TIMEOUT_S) -> None:
    try:
        msg = proc.send_and_await_response(HTTP_CLIENT, ws_close_action(channel_id), timeout=timeout)
    except SendError as exc:
        raise HttpClientError.from_send_error(exc, channel_id=channel_id) from exc
    _check_ack(msg)


async def close_ws_connection_async(proc: AsyncProcess, channel_id: int,
                                    timeout: float = WS_TIMEOUT_S) -> None:
    try:
        msg = await proc.send_and_await_response(HTTP_CLIENT, ws_close_action(channel_id),
                                                 timeout=timeout)
    except SendError as exc:
        raise HttpClientError.from_send_error(exc, channel_id=channel_id) from exc
    _check_ack(msg)


def parse_ws_message(msg: Message) -> WsPush | WsClose | None:
    """A Request from http-client:distro:sys as WsPush / WsClose; None if it is not one."""
    if not msg.is_request or msg.source != HTTP_CLIENT:
        return None
    req = http_pb2.HttpClientRequest()
    try:
        req.ParseFromString(msg.body)
    except DecodeError:
        return None
    which = req.WhichOneof("request")
    if which == "web_socket_push":
        push = req.web_socket_push
        return WsPush(push.channel_id, ws_type_name(push.message_type), msg.blob)
    if which == "web_socket_close":
        return WsClose(req.web_socket_close.channel_id)
    return None

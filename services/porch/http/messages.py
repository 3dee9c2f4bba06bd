"""What the http-server sends a process that bound paths, and the answer to an HTTP
request: kinode_process_lib's HttpServerRequest, IncomingHttpRequest and HttpResponse.

`parse_request(msg)` turns a message into one of IncomingHttpRequest, WsOpen, WsPush,
WsClose (Kinode's `parse_request(bytes)`; porch's takes the Message, since the HTTP
body and the WebSocket payload travel in its blob, and checks who sent it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from google.protobuf.message import DecodeError

from porch.address import HTTP_SERVER
from porch.http.headers import Headers
from porch.http.ws import WsClose, WsOpen, WsPush, ws_type_name
from porch.process.message import Message
from porch.wire import http_pb2


class HttpServerError(Exception):
    """An action the http-server refused, or did not answer; or a message that is not
    one of the http-server's.

    `kind` is the variant name: MalformedRequest, NoBlob, InvalidSourceProcess,
    WsPingPongTooLong, WsChannelNotFound from the server, and StateNotSaved (not in
    Kinode: the node could not save the change, so nothing changed; try again later);
    Timeout and UnexpectedResponse from this side (as process_lib).
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


@dataclass
class IncomingHttpRequest:
    """An HTTP request forwarded by the http-server, its body included."""

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
    def request_id(self) -> str:
        """The id the node gave this request (the access log shows it; the stub's log
        lines while the handler runs carry it): its `x-request-id` header, "" if none."""
        return self.headers.get("x-request-id") or ""

    @property
    def query_params(self) -> dict[str, str]:
        """Decoded query parameters; for a repeated key the last wins (as Kinode, and
        as `headers.get`); `query_list` has them all."""
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


HttpServerRequest = IncomingHttpRequest | WsOpen | WsPush | WsClose


def parse_request(msg: Message) -> HttpServerRequest:
    """The http-server's message as IncomingHttpRequest (body from the blob), WsOpen,
    WsPush (payload in `.blob`) or WsClose. HttpServerError("MalformedRequest") for
    anything else, including a message another process sent: only
    http-server:distro:sys speaks for HTTP clients."""
    if msg.source != HTTP_SERVER or not msg.is_request:
        raise HttpServerError("MalformedRequest", f"not a request from {HTTP_SERVER} (from {msg.source})")
    request = http_pb2.HttpServerRequest()
    try:
        request.ParseFromString(msg.body)
    except DecodeError:
        raise HttpServerError("MalformedRequest", "not an HttpServerRequest") from None
    which = request.WhichOneof("request")
    if which == "http":
        return IncomingHttpRequest.from_proto(request.http, msg.blob.bytes if msg.blob else b"")
    if which == "web_socket_open":
        return WsOpen(request.web_socket_open.path, request.web_socket_open.channel_id)
    if which == "web_socket_push":
        push = request.web_socket_push
        return WsPush(push.channel_id, ws_type_name(push.message_type), msg.blob)
    if which == "web_socket_close":
        return WsClose(request.web_socket_close.channel_id)
    raise HttpServerError("MalformedRequest", "an empty HttpServerRequest")


@dataclass
class HttpResponse:
    """The answer to an HTTP request: status, headers (repeatable), and the body
    (Kinode's builder: `HttpResponse(200).header("Content-Type", "text/plain").body(b"hi")`)."""

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
        """The Response body on the wire (the content travels as the blob). Raises
        TypeError for a status, header or body of the wrong type; the http-server
        judges the values (an impossible status or header is a 502 there)."""
        if not isinstance(self.content, bytes | bytearray):
            raise TypeError(f"HTTP body must be bytes or str, not {type(self.content).__name__}")
        msg = http_pb2.HttpResponse(status=self.status)
        for name, value in self.headers:
            msg.headers.add(name=name, value=value)
        return msg.SerializeToString()

"""The http-client's vocabulary on the wire: decode actions, encode results and pushes.

Kept apart from the I/O so the exact shapes (docs/kinode.md §6.3, §6.4, §6.6) are unit-tested:
`HttpClientResult{ok{http{status, headers}}}` with the body as blob, `{ok{web_socket_ack}}`,
or `{err{kind, fields}}`; `HttpClientRequest{web_socket_push | web_socket_close}` to an
opener.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import DecodeError

from porch.wire import http_pb2

Kind = http_pb2.HttpClientError.Kind

# An error kind and its fields, as produced by the service's checks and workers.
ErrorFields = dict[str, str | int]


class ClientFailure(Exception):
    """An outcome that becomes `HttpClientResult{err}`: `kind` is the variant name."""

    def __init__(self, kind: str, **fields: str | int) -> None:
        Kind.Value(kind)  # a typo here must fail loudly, not reach the wire
        self.kind = kind
        self.fields: ErrorFields = fields
        super().__init__(f"{kind} {fields}" if fields else kind)


def decode_action(body: bytes) -> http_pb2.HttpClientAction | None:
    """The action, or None if the body is not one (MalformedRequest)."""
    action = http_pb2.HttpClientAction()
    try:
        action.ParseFromString(body)
    except DecodeError:
        return None
    if action.WhichOneof("action") is None:
        return None
    return action


def http_ok(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    result = http_pb2.HttpClientResult()
    resp = result.ok.http
    resp.status = status
    for name, value in headers:
        resp.headers.add(name=name, value=value)
    return result.SerializeToString()


_WS_ACK = http_pb2.HttpClientResult(ok=http_pb2.HttpClientResponse(web_socket_ack=http_pb2.Empty()))
WS_ACK = _WS_ACK.SerializeToString()


def error(kind: str, **fields: str | int) -> bytes:
    """`HttpClientResult{err{kind, ...fields}}`; fields: method, url, version, channel_id, message."""
    result = http_pb2.HttpClientResult()
    err = result.err
    err.kind = Kind.Value(kind)  # type: ignore[assignment]
    for name, value in fields.items():
        setattr(err, name, value)
    return result.SerializeToString()


def failure(exc: ClientFailure) -> bytes:
    return error(exc.kind, **exc.fields)


def ws_push(channel_id: int, message_type: int) -> bytes:
    req = http_pb2.HttpClientRequest()
    req.web_socket_push.channel_id = channel_id
    req.web_socket_push.message_type = message_type  # type: ignore[assignment]
    return req.SerializeToString()


def ws_close(channel_id: int) -> bytes:
    req = http_pb2.HttpClientRequest()
    req.web_socket_close.channel_id = channel_id
    return req.SerializeToString()

"""WebSocket frames as a process sees them, on both sides: the frame types and the
events the http-server (sockets a process serves) and the http-client (sockets it
opened) send it. One copy for `porch.http.server` and `porch.http.client`."""

from __future__ import annotations

from dataclasses import dataclass

from porch.process.message import Blob
from porch.wire import http_pb2

WS_TYPES = ("Text", "Binary", "Ping", "Pong", "Close")


def ws_type(message_type: str | int) -> int:
    """The wire value of a frame type given by name ("Text", ...) or by wire value;
    ValueError for anything else."""
    if isinstance(message_type, int) and not isinstance(message_type, bool):
        if message_type in http_pb2.WsMessageType.values():
            return message_type
    elif message_type in WS_TYPES:
        return int(http_pb2.WsMessageType.Value(message_type))
    raise ValueError(f"message type must be one of {', '.join(WS_TYPES)}, not {message_type!r}")


def ws_type_name(value: int) -> str:
    return http_pb2.WsMessageType.Name(value)


@dataclass(frozen=True)
class WsOpen:
    """A client opened a WebSocket on a path this process bound (server side only)."""

    path: str
    channel_id: int


@dataclass(frozen=True)
class WsPush:
    """A frame from the other end: Text, Binary, Ping, Pong or Close."""

    channel_id: int
    message_type: str
    blob: Blob | None

    @property
    def data(self) -> bytes:
        return self.blob.bytes if self.blob is not None else b""


@dataclass(frozen=True)
class WsClose:
    """The socket closed (or failed); the channel is gone."""

    channel_id: int

"""The Tornado privates porch.http_server.websocket.MaskedFramesOnly relies on (issue 9
item 14): if a Tornado upgrade renames them, this fails before anything misbehaves."""

from __future__ import annotations

import inspect

import tornado.websocket

from porch.http_server.websocket import MaskedFramesOnly


def test_the_frame_reading_privates_are_still_there() -> None:
    base = tornado.websocket.WebSocketProtocol13
    for name in ("_receive_frame", "_read_bytes"):
        method = getattr(base, name, None)
        assert method is not None and inspect.iscoroutinefunction(method), name
    assert list(inspect.signature(base._read_bytes).parameters) == ["self", "n"]
    assert "self._read_bytes(2)" in inspect.getsource(base._receive_frame), "the header is read first, 2 bytes"
    assert issubclass(MaskedFramesOnly, base)

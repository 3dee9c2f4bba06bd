"""What porch still relies on inside Tornado (issue 11 item 6), held here so that a
Tornado upgrade that changes it fails this file before anything misbehaves.

Since issue 12 the WebSocket layer is porch's own (no WebSocket private is used) and
accepting is porch's own (`listener.Server`: no TCPServer or HTTPServer private). Three
remain, each named in a comment where it is used, checked on Tornado 6.4.2, 6.5.2 and
6.6.1; a small HTTP/1 layer of porch's own would remove them:

1. `HTTP1Connection._disconnect_on_finish` (listener `_Exchange.last_on_connection`):
   the only way to make one answer a connection's last (`Connection: close`) while
   the worker drains;
2. `IOStream._read_buffer_size` (listener `_has_input`): whether a kept-alive
   connection holds part of a next request, so that draining does not cut it;
3. the order in which Tornado reads a request head and gives up on an oversized one
   (listener `_HeadLimit`, which answers 431): the head is read with the stream's
   `read_until_regex(regex, max_bytes)`, and a read past `max_bytes` sets the stream's
   `error` to `UnsatisfiableReadError` and closes it through `close_fd()`.
"""

from __future__ import annotations

import inspect
import socket

from tornado import http1connection, iostream

from porch.http_server import listener


def test_1_disconnect_on_finish_is_set_per_request_and_read_when_finishing() -> None:
    init = inspect.getsource(http1connection.HTTP1Connection.__init__)
    assert "self._disconnect_on_finish = False" in init
    finish = inspect.getsource(http1connection.HTTP1Connection._finish_request)
    assert "self._disconnect_on_finish" in finish and "self.close()" in finish
    headers = inspect.getsource(http1connection.HTTP1Connection.write_headers)
    assert "self._disconnect_on_finish" in headers, "it also writes Connection: close"
    assert "_disconnect_on_finish" in inspect.getsource(listener._Exchange.last_on_connection)


def test_2_read_buffer_size_counts_what_the_stream_holds() -> None:
    a, b = socket.socketpair()
    try:
        stream = iostream.IOStream(a)
        assert stream._read_buffer_size == 0
        assert "_read_buffer_size" in inspect.getsource(iostream.BaseIOStream._read_to_buffer)
        stream.close()
    finally:
        b.close()
    assert "_read_buffer_size" in inspect.getsource(listener._has_input)


def test_3_the_head_is_read_with_read_until_regex_and_an_oversized_one_closes_via_close_fd() -> None:
    reading = inspect.getsource(http1connection.HTTP1Connection)  # _read_message(_inner): it moved in 6.6
    assert "self.stream.read_until_regex(" in reading and "max_bytes=self.params.max_header_size" in reading
    close = inspect.getsource(iostream.BaseIOStream.close)
    assert "self.close_fd()" in close
    assert "self.error = " in close, "the error that closes the stream is kept in stream.error"
    assert "raise UnsatisfiableReadError" in inspect.getsource(iostream.BaseIOStream._check_max_bytes)
    assert list(inspect.signature(iostream.BaseIOStream.read_until_regex).parameters) == [
        "self", "regex", "max_bytes"]

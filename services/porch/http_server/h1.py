"""HTTP/1.1 on one accepted socket: porch's own server connection (issue 12).

Tornado's HTTP/1 server cost the worker most of its CPU per request (a coroutine and
several futures per request, its stream re-registered with the loop twice per
request, two setsockopt calls per response) and three private names to get the
answers porch must give (431, a connection's last answer while draining, whether a
next request has begun). Here the parsing is llhttp's (through `httptools`, the parser
uvicorn uses: strict about framing, so no request smuggling through ambiguous
lengths), and the rest is a small state machine on the loop:

- the socket is watched for input for the connection's whole life (`add_reader`), one
  `recv` per wake-up; a response is one `send` (`sendmsg` with a large body), queued
  with `add_writer` only when the socket is full;
- one request at a time: requests a client pipelines are parsed as they come and
  queued (up to `PIPELINE_BYTES` of them, then reading pauses), each handed to its
  handler once the one before it is answered;
- limits: a head over `max_header_bytes` is answered 431, a head not complete within
  `idle_timeout_s` (or a kept-alive connection idle that long) is closed, garbage is
  answered 400; each of these, like the 413 and 408 the request layer decides, is a
  closing answer: written, the sending side shut, what the client still sends read
  and dropped for a moment (bounded), then closed, so that the client reads the
  answer instead of a reset;
- `Connection` rules as llhttp reads them (HTTP/1.0 closes unless keep-alive was
  asked for; `Connection: close` closes after the answer), `Expect: 100-continue`
  answered, HEAD answered without a body.

The request layer (`porch.http_server.listener`) sees a `Handler` per request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import httptools

from porch.http_server.exchange import DATE, closing_response, reason

log = logging.getLogger("porch.http_server")

READ_SIZE = 65536
PIPELINE_BYTES = 1024 * 1024  # input kept while a request is answered; past it, reading pauses
PIPELINE_REQUESTS = 64  # requests parsed and queued behind the one answered; at it, reading pauses
LINGER_S = 2.0  # how long a closing answer's client may keep sending before the close
LINGER_BYTES = 1024 * 1024  # ... and how much of it is read and dropped
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Methods llhttp parses as themselves. Any other token (an extension method: HTTP allows
# every token, and Kinode forwards it, docs/kinode.md §2.2) is parsed as POST and keeps
# its own name (H1Connection._own_method). CONNECT is among these: its request line is
# not a path, and llhttp must see it as what it is.
_LLHTTP_AS_IS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH",
                           b"CONNECT", b"TRACE"))
FRAMING_PER_CHUNK = 64  # bytes of chunk line allowed per chunk (size, CRLFs, a short extension)
MAX_METHOD = 64  # bytes of a request line kept while its method's end has not arrived
MAX_HEADERS = 256  # header fields in one head (each is an object here); past it, 431
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")


class BadHeader(ValueError):
    """A response header HTTP cannot carry (the caller answers 500 instead)."""


class Handler(Protocol):
    """One request, as the request layer handles it."""

    def headers_received(self, conn: H1Connection, method: str, target: str, version: str,
                         headers: list[tuple[str, str]]) -> None: ...

    def data_received(self, chunk: bytes) -> None: ...

    def finish(self) -> None: ...

    def client_gone(self) -> None: ...


class _Request:
    """A request as parsed: handed to a handler at once, or queued behind another."""

    __slots__ = ("body", "chunks", "complete", "framing", "handler", "headers", "keep_alive", "method",
                 "queued_bytes", "size", "upgrade", "url", "version")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = "GET"
        self.version = "HTTP/1.1"
        self.keep_alive = True
        self.upgrade = False
        self.body: list[bytes] = []  # while queued
        self.queued_bytes = 0  # its head, while it waits behind another (PIPELINE_BYTES)
        self.size = 0  # body bytes so far
        self.chunks = 0  # chunks begun (a chunked body)
        self.framing = 0  # bytes after the head that are not body: chunk lines, trailers
        self.complete = False
        self.handler: Handler | None = None


class H1Connection:
    """One HTTP/1 connection. `new_handler()` makes the handler of each request."""

    def __init__(self, sock: socket.socket, peer: Any, new_handler: Callable[[], Handler], *,
                 max_header_bytes: int, max_body_bytes: int, idle_timeout_s: float,
                 on_closed: Callable[[H1Connection], None],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # answers are whole
        except OSError:
            pass
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.loop = loop or asyncio.get_running_loop()
        self._new_handler = new_handler
        self._on_closed = on_closed
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.idle_timeout_s = idle_timeout_s
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.detached = False  # handed over (a WebSocket): not ours any more
        self.last = False  # the current request's answer is this connection's last
        self.draining = False  # the worker is going: every answer from now on is the last
        self.current: _Request | None = None  # the request handed to a handler, until answered
        self._parsing: _Request | None = None  # the request the parser is in
        self._queue: deque[_Request] = deque()  # parsed behind the current one
        self._queued_bytes = 0
        self._in_head = True  # no request begun, or its head is incomplete
        self._head_seen = 0  # bytes received while in a head
        self._upgrading = False  # the parser stopped at an upgrade: input waits in _pending
        self._pending = bytearray()
        self._paused = False
        self._out = bytearray()
        self._writing = False
        self._close_after_write = False
        self._resume_after_write = False  # the next request waits for the answer to leave
        self._lingering = False
        self._lingered = 0
        self._idle: asyncio.TimerHandle | None = None
        # A closing answer (400, 413, 431) to a request pipelined behind others: it goes
        # once they are answered, and nothing more is read meanwhile.
        self._refusal: bytes | None = None
        self._method: str | None = None  # the request being parsed has this extension method
        self._method_start = b""  # a request line's start, until its method is whole
        self._linger_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None  # a client not taking its answer
        self.loop.add_reader(self.fd, self._readable)
        self._arm_idle()

    # ------------------------------------------------------------------ input

    def _readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if self._lingering:
            self._lingered += len(data)
            if not data or self._lingered > LINGER_BYTES:
                self.close()
            return
        if not data:
            self._eof()
            return
        if self._upgrading:
            self._pending += data
            if len(self._pending) > PIPELINE_BYTES:
                self._pause()
            return
        self._feed(data)

    def _eof(self) -> None:
        current = self.current
        self.current = None
        if current is not None and current.handler is not None:
            current.handler.client_gone()
        self.close()

    def _feed(self, data: bytes) -> None:
        if self._parsing is None:  # between requests: a request line begins here
            data = self._own_method(data)
            if not data:
                return
        # A body's read: what of it is not body (chunk lines, trailers) is bounded below.
        in_body = self._parsing if not self._in_head else None
        body_before = in_body.size if in_body is not None else 0
        # A head still incomplete after this read has seen at most these bytes: past
        # max_header_bytes it is refused (431) before the parser buffers more of it.
        if self._in_head:
            self._head_seen += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0] if upgrade.args else len(data)
            self._upgrading = True
            self._pending[:0] = data[offset:]
            return
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Stop):  # a callback stopped the parser on purpose
                return
            # One of our callbacks failed (httptools wraps what it raised): porch's
            # fault, not the client's: 500, and the traceback logged.
            log.error("handling a request from %s failed", self.peer, exc_info=exc.__context__ or exc)
            if not (self.closed or self.detached or self._lingering or self._refusal is not None):
                self._refuse(closing_response(500, "internal error"))
            return
        except httptools.HttpParserError as exc:
            if not (self.closed or self.detached or self._lingering or self._refusal is not None):
                log.info("malformed HTTP request from %s: %s", self.peer, exc)
                self._refuse(closing_response(400, "malformed request"))
            return
        if (self._in_head and self._head_seen > self.max_header_bytes and not self.closed
                and self._refusal is None):
            self._head_too_large()
        elif (in_body is not None and in_body is self._parsing and not self.closed
              and self._refusal is None and not self._lingering):
            in_body.framing += len(data) - (in_body.size - body_before)
            # Chunk lines cost a few bytes each (more with extensions); trailers at most
            # what a head may. Past that a client is feeding the parser's buffers.
            if in_body.framing > self.max_header_bytes + FRAMING_PER_CHUNK * in_body.chunks:
                self._refuse(closing_response(431, "request trailers or chunk lines too large"))

    def _own_method(self, data: bytes) -> bytes:
        """The bytes to parse for a read that begins a request: an extension method is
        replaced by POST and remembered (self._method). A read that ends before the
        method does is kept (up to MAX_METHOD bytes) until the rest comes. A request
        that begins inside a read, behind another, is parsed as it is: with a method
        llhttp does not know it is answered 400 (after the requests before it)."""
        if self._method_start:
            data = self._method_start + data
            self._method_start = b""
        # Empty lines before a request (RFC 9112 2.2) are dropped, never kept (a stream of
        # them is no request); CR and LF one by one, as a read may end between the two.
        data = data.lstrip(b"\r\n")
        if not data:
            return b""
        space = data.find(b" ", 0, MAX_METHOD + 1)
        if space < 0:
            if len(data) <= MAX_METHOD and _TOKEN.fullmatch(data):
                self._method_start = data
                return b""
            return data  # not a method: llhttp's error
        method = data[:space]
        if method in _LLHTTP_AS_IS or not _TOKEN.fullmatch(method):
            return data
        self._method = method.decode("latin-1")
        return b"POST" + data[space:]

    def _head_too_large(self) -> None:
        self._refuse(closing_response(431, "request head (request line and headers) too large"))

    def _refuse(self, answer: bytes) -> None:
        """A closing answer to the request being parsed (400, 413, 431). Requests a
        client pipelined before it are answered first, in order: reading stops, and
        the refusal goes once they are answered (self._next_request)."""
        failing = self._parsing
        if failing is not None and failing in self._queue:
            self._queue.remove(failing)
        if (self.current is None or self.current is failing) and not self._queue:
            self.answer_and_close(answer)
            return
        self._refusal = answer
        self._pause()

    # -- llhttp's callbacks (httptools) ----------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._parsing = _Request()

    def on_url(self, url: bytes) -> None:
        assert self._parsing is not None
        self._parsing.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._parsing
        assert request is not None
        if self._in_head:
            request.headers.append((name, value))
            if len(request.headers) > MAX_HEADERS:
                self._head_too_large()
                raise _Stop
        # else a trailer field (after a chunked body): dropped. It arrives after the
        # checks made on the head (Host, login, proxy headers), and a request queued
        # behind another would otherwise get it as a header; its bytes are bounded in _feed.

    def on_chunk_header(self) -> None:
        request = self._parsing
        if request is not None:
            request.chunks += 1

    def on_headers_complete(self) -> None:
        request = self._parsing
        assert request is not None
        # The head as parsed (request line, headers, their CRLFs): what arrived with it
        # in the same read may be body, so the bytes read do not say.
        size = len(request.url) + 16 + sum(len(n) + len(v) + 4 for n, v in request.headers)
        if size > self.max_header_bytes:
            self._head_too_large()
            raise _Stop
        self._in_head = False
        self._head_seen = 0
        parser = self.parser
        request.keep_alive = parser.should_keep_alive()
        request.upgrade = parser.should_upgrade()
        if self._method is not None:
            request.method, self._method = self._method, None
        else:
            request.method = parser.get_method().decode("latin-1")
        request.version = "HTTP/" + parser.get_http_version()
        if request.version not in ("HTTP/1.1", "HTTP/1.0"):  # llhttp also reads 0.9 and 2.0
            self._refuse(closing_response(505, "HTTP/1.1 or HTTP/1.0 only"))
            raise _Stop
        if self.current is None and not self._queue and not self._writing:
            self._start(request)
            if self.closed or self.detached:
                raise _Stop
        else:  # behind the one answered (or its answer, still leaving), and those waiting
            self._queue.append(request)
            request.queued_bytes = size  # its head counts against PIPELINE_BYTES, as its body
            self._queued_bytes += size
            self._resume_after_write = self._resume_after_write or self._writing
            if len(self._queue) >= PIPELINE_REQUESTS or self._queued_bytes > PIPELINE_BYTES:
                self._pause()

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        assert request is not None
        request.size += len(body)
        if request.size > self.max_body_bytes:
            too_large = f"request body larger than {self.max_body_bytes} bytes"
            self._refuse(closing_response(413, too_large))
            raise _Stop
        if request is self.current:
            assert request.handler is not None
            request.handler.data_received(body)
            if self.closed:
                raise _Stop
        else:
            request.body.append(body)
            self._queued_bytes += len(body)
            if self._queued_bytes > PIPELINE_BYTES:
                self._pause()

    def on_message_complete(self) -> None:
        request = self._parsing
        assert request is not None
        request.complete = True
        self._parsing = None
        self._in_head = True
        self._head_seen = 0  # (a next head in the same read is counted from the next read)
        if request is self.current:
            assert request.handler is not None
            request.handler.finish()
            if self.closed or self.detached:
                raise _Stop

    def _start(self, request: _Request) -> None:
        """Hand a request to a new handler (with what it queued, if it waited)."""
        self.current = request
        self._queued_bytes -= request.queued_bytes
        request.queued_bytes = 0
        self.last = not request.keep_alive or self.draining
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        handler = request.handler = self._new_handler()
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers]
        handler.headers_received(self, request.method, request.url.decode("latin-1"),
                                 request.version, headers)
        if self.closed or self.detached or self.current is not request:
            return
        if not request.upgrade and any(n.lower() == b"expect" and v.lower() == b"100-continue"
                                       for n, v in request.headers):
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if request.body:
            body, request.body = request.body, []
            self._queued_bytes -= sum(len(b) for b in body)
            for chunk in body:
                handler.data_received(chunk)
                if self.closed or self.current is not request:
                    return
        if request.complete:
            handler.finish()

    # ------------------------------------------------------------------ output

    def respond(self, status: int, headers: list[tuple[str, str]], body: bytes, *, head_only: bool,
                body_allowed: bool) -> None:
        """The answer to the current request (BadHeader before anything is written if a
        header cannot be sent). Content-Length and Date are added; Connection says
        whether this is the connection's last answer."""
        if self.closed or self.current is None:
            return
        lines = [f"HTTP/1.1 {status} {reason(status)}\r\n".encode("latin-1")]
        for name, value in headers:
            try:
                n = name.encode("latin-1")
                v = value.encode("latin-1")
            except UnicodeEncodeError:
                raise BadHeader(f"header {name[:80]!r} is not Latin-1") from None
            if not _TOKEN.fullmatch(n) or not _FIELD_VALUE.fullmatch(v):
                raise BadHeader(f"header {name[:80]!r} cannot be sent")
            lines.append(n + b": " + v + b"\r\n")
        if body_allowed:
            lines.append(b"Content-Length: %d\r\n" % len(body))
        else:
            body = b""
        lines.append(b"Date: " + DATE.now().encode() + b"\r\n")
        request = self.current
        # A request whose body was not read to its end leaves the connection unusable.
        last = self.last or self.draining or not request.complete
        if last:
            lines.append(b"Connection: close\r\n")
        elif request.version == "HTTP/1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        head = b"".join(lines)
        self.current = None
        if head_only or not body:
            self._write(head)
        elif len(body) < 16384:
            self._write(head + body)
        else:
            self._write_two(head, body)
        if self.closed:
            return
        if last:
            self._close_after_write = True
            self._queue.clear()
            if not self._writing:
                self._finish_close()
            return
        self._next_request()

    def _next_request(self) -> None:
        """Answered and kept alive: the next request, queued already, or to come. Not
        while the last answer is still being written: a client that pipelines without
        reading is served at the pace it reads (and reading pauses when its queue
        is full)."""
        if self._writing:
            self._resume_after_write = True
            return
        if self._refusal is not None and not self._queue:
            refusal, self._refusal = self._refusal, None
            self.answer_and_close(refusal)
            return
        if self._paused and not self._lingering and self._refusal is None:
            self._paused = False
            self.loop.add_reader(self.fd, self._readable)
        if self._queue:  # (an upgrade pipelined behind other requests among them)
            self.loop.call_soon(self._start_queued)
            return
        if self._upgrading:  # an upgrade refused, or an Upgrade that was not ours
            self._upgrading = False
            self.parser = httptools.HttpRequestParser(self)
            pending, self._pending = bytes(self._pending), bytearray()
            self._in_head = True
            self._head_seen = 0
            self._arm_idle()
            if pending:
                self.loop.call_soon(self._feed_later, pending)
            return
        if self._in_head and self._parsing is None:
            self._arm_idle()

    def _start_queued(self) -> None:
        if self.closed or self.detached or self.current is not None or not self._queue:
            return
        self._start(self._queue.popleft())

    def _feed_later(self, data: bytes) -> None:
        if not (self.closed or self.detached):
            self._feed(data)

    def _write(self, data: bytes) -> None:
        if self.closed:
            return
        if self._writing:
            self._out += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._gone()
            return
        if sent < len(data):
            self._out += memoryview(data)[sent:]
            self._wait_writable()

    def _write_two(self, head: bytes, body: bytes) -> None:
        """A large body is not copied onto its head: both in one sendmsg."""
        if self._writing:
            self._out += head
            self._out += body
            return
        try:
            sent = self.sock.sendmsg([head, body])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._gone()
            return
        if sent < len(head) + len(body):
            if sent < len(head):
                self._out += memoryview(head)[sent:]
                self._out += body
            else:
                self._out += memoryview(body)[sent - len(head):]
            self._wait_writable()

    def _wait_writable(self) -> None:
        """The socket is full: write the rest when it has room. A client that takes
        nothing for idle_timeout_s is gone (it would hold its connection, its slot in
        max_connections and the unsent answer for ever)."""
        self._writing = True
        self.loop.add_writer(self.fd, self._writable)
        self._stall_timer = self.loop.call_later(self.idle_timeout_s, self._stalled)

    def _stalled(self) -> None:
        self._stall_timer = None
        log.info("HTTP client %s took nothing of its answer for %.0f s: closed", self.peer, self.idle_timeout_s)
        self._gone()

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._gone()
            return
        del self._out[:sent]
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if self._out:  # progress: it has idle_timeout_s again for the rest
            self._stall_timer = self.loop.call_later(self.idle_timeout_s, self._stalled)
            return
        self._writing = False
        self.loop.remove_writer(self.fd)
        if self._close_after_write:
            self._finish_close()
        elif self._resume_after_write:
            self._resume_after_write = False
            self._next_request()

    def _gone(self) -> None:
        """The socket failed while writing: the client is gone."""
        current, self.current = self.current, None
        if current is not None and current.handler is not None:
            current.handler.client_gone()
        self.close()

    # ------------------------------------------------------------------ closing

    def answer_and_close(self, answer: bytes) -> None:
        """A closing answer (400, 408, 413, 431): written, the sending side shut, what
        the client still sends read and dropped (LINGER_S, LINGER_BYTES), then closed."""
        if self.closed or self._lingering:
            return
        self.current = None
        self._queue.clear()
        self._lingering = True
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._paused:
            self._paused = False
            self.loop.add_reader(self.fd, self._readable)
        self._pending.clear()
        self._write(answer)
        if self.closed:
            return
        self._close_after_write = True
        if not self._writing:
            self._finish_close()

    def _finish_close(self) -> None:
        """Everything is written: a closing answer lingers, a last answer closes."""
        if self._lingering:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.close()
                return
            self._linger_timer = self.loop.call_later(LINGER_S, self.close)
            return
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        loop = self.loop
        if not self.detached:
            if not self._paused:
                loop.remove_reader(self.fd)
            if self._writing:
                loop.remove_writer(self.fd)
        for timer in (self._idle, self._linger_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._idle = self._linger_timer = self._stall_timer = None
        if not self.detached:
            try:
                if not self._out and not self._lingering:
                    self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.sock.close()
        self._on_closed(self)

    def detach(self) -> tuple[socket.socket, bytes]:
        """Give the socket away (a WebSocket): this connection ends, the socket stays
        open; returns it and the bytes the client sent after the request head."""
        if not self._paused:
            self.loop.remove_reader(self.fd)
        if self._writing:
            self.loop.remove_writer(self.fd)
            self._writing = False
        self._paused = False
        self.detached = True
        leftover = bytes(self._pending)
        self._pending.clear()
        self.current = None
        self.close()
        return self.sock, leftover

    def close_if_idle(self) -> bool:
        """Close the connection if it is between requests with nothing of a next one
        received (a draining worker's kept-alive connections); whether it did."""
        if (self.closed or self.current is not None or self._queue or self._parsing is not None
                or self._head_seen or self._pending or self._writing):
            return False
        self.close()
        return True

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.loop.remove_reader(self.fd)

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self.loop.call_later(self.idle_timeout_s, self._idle_timed_out)

    def _idle_timed_out(self) -> None:
        """No complete head for idle_timeout_s: closed, as Tornado did (no answer)."""
        self._idle = None
        if not self.closed and self.current is None and not self._queue:
            self.close()


class _Stop(Exception):
    """Raised from a parser callback: the connection was closed or given away."""

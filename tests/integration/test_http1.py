"""porch's own HTTP/1 connection (porch.http_server.h1, issue 12) on a real node, with
raw sockets: what HTTP/1.1 clients (and attackers) send beyond one request at a time.

The rest of the HTTP behaviour (limits 408/413/431, max_connections, idle timeout,
draining, Host rules) is held by test_http_limits.py, test_security_front.py and
test_restart_graceful.py, which ran against Tornado's HTTP/1 server before and pass
unchanged against porch's."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from support.node import Node, free_port

APP = "h1:pkg:pub.os"


class Site:
    def __init__(self) -> None:
        self.node = Node('node = "h1.os"\n[http_server]\nmax_body_bytes = 100000\nmax_header_bytes = 4096\n'
                         f'[[process]]\nid = "{APP}"\ncapabilities = ["http-server:distro:sys"]\n')
        self.port = free_port()
        self.node.start("kernel")
        self.node.start("http-server", "--port", str(self.port), env={"PORCH_PASSWORD": "pw"})
        self.node.spawn(APP, """
            import porch
            from porch.http.server import HttpBindingConfig, HttpResponse, HttpServer
            proc = porch.Process()
            server = HttpServer(proc)
            server.bind_http_path("/echo", HttpBindingConfig(authenticated=False))
            server.bind_http_path("/headers", HttpBindingConfig(authenticated=False))
            print("READY", flush=True)
            def answer(req):
                blob = proc.get_blob()
                if req.bound_path.endswith("/headers"):  # the header names the app got
                    body = " ".join(sorted(name for name, _ in req.headers.items())).encode()
                else:
                    body = req.method.encode() + b" " + (blob.bytes if blob else b"")
                return HttpResponse(200).header("Content-Type", "text/plain").body(body)
            while True:
                server.handle_request(proc.await_message(), answer)
        """)
        self.node.wait_log(APP, "READY")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    try:
        yield s
    finally:
        s.node.close()


def read_response(s: socket.socket, buf: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One response from the stream (buf keeps what follows it)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, bytes(buf)
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.decode().lower(): v.decode() for k, v in (line.split(b": ", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = s.recv(65536)
        assert chunk
        rest += chunk
    buf[:] = rest[length:]
    return lines[0], headers, rest[:length]


def closed(s: socket.socket) -> bool:
    s.settimeout(5)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_pipelined_requests_are_answered_in_order(site: Site) -> None:
    with site.connect() as s:
        s.sendall(b"".join(f"POST /{APP}/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nn={i}"
                           .encode() for i in range(5))
                  + f"GET /{APP}/echo HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        buf = bytearray()
        for i in range(5):
            status, _, body = read_response(s, buf)
            assert status == b"HTTP/1.1 200 OK" and body == f"POST n={i}".encode(), body
        status, _, body = read_response(s, buf)
        assert body == b"GET "


def test_chunked_bodies_and_100_continue(site: Site) -> None:
    with site.connect() as s:
        s.sendall(f"POST /{APP}/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".encode())
        buf = bytearray()
        assert read_response(s, buf)[2].endswith(b" abcde")
        s.sendall(f"POST /{APP}/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
                  "Expect: 100-continue\r\n\r\n".encode())
        status, _, _ = read_response(s, buf)
        assert status == b"HTTP/1.1 100 Continue"
        s.sendall(b"hi")
        assert read_response(s, buf)[2].endswith(b" hi")


def test_a_chunked_body_over_the_limit_is_413_and_closed(site: Site) -> None:
    with site.connect() as s:
        s.sendall(f"POST /{APP}/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                  .encode())
        chunk = b"%x\r\n" % 50_000 + b"x" * 50_000 + b"\r\n"
        try:
            for _ in range(3):
                s.sendall(chunk)
        except OSError:
            pass
        status, headers, _ = read_response(s, bytearray())
        assert status.startswith(b"HTTP/1.1 413 ")
        assert headers["connection"] == "close"
        assert closed(s)


@pytest.mark.parametrize("request_", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\nX: a\r\n folded\r\n\r\n",  # obs-fold
    b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on the HTTP port
], ids=["obs-fold", "length-and-chunked", "two-lengths", "space-in-name", "nul-in-target", "tls"])
def test_ambiguous_or_malformed_requests_are_400_and_closed(site: Site, request_: bytes) -> None:
    """No request smuggling: a message whose framing two servers could read differently
    is refused, not guessed."""
    with site.connect() as s:
        s.sendall(request_)
        status, headers, _ = read_response(s, bytearray())
        assert status.startswith(b"HTTP/1.1 400 "), status
        assert headers["connection"] == "close"
        assert closed(s)


def test_http_1_0_keeps_alive_only_when_asked(site: Site) -> None:
    with site.connect() as s:
        s.sendall(f"GET /{APP}/echo HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n".encode())
        buf = bytearray()
        status, headers, _ = read_response(s, buf)
        assert headers["connection"].lower() == "keep-alive"
        s.sendall(f"GET /{APP}/echo HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        status, headers, _ = read_response(s, buf)
        assert status == b"HTTP/1.1 200 OK" and headers["connection"] == "close"
        assert closed(s)


def test_head_has_no_body_and_the_connection_goes_on(site: Site) -> None:
    with site.connect() as s:
        s.sendall(f"HEAD /{APP}/echo HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: " in head and rest == b""
        s.sendall(f"GET /{APP}/echo HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        assert read_response(s, bytearray())[0] == b"HTTP/1.1 200 OK"


def test_a_head_over_the_limit_in_small_pieces_is_431(site: Site) -> None:
    with site.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        try:
            for _ in range(100):
                s.sendall(b"X-Pad: " + b"p" * 60 + b"\r\n")
                time.sleep(0.001)
        except OSError:
            pass
        status, headers, _ = read_response(s, bytearray())
        assert status.startswith(b"HTTP/1.1 431 ") and headers["connection"] == "close"


def test_a_client_that_leaves_mid_request_leaves_the_server_serving(site: Site) -> None:
    for _ in range(20):
        with site.connect() as s:
            s.sendall(f"POST /{APP}/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc".encode())
    with site.connect() as s:
        s.sendall(f"GET /{APP}/echo HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        assert read_response(s, bytearray())[0] == b"HTTP/1.1 200 OK"


def test_a_large_answer_leaves_whole(site: Site) -> None:
    with site.connect() as s:
        body = b"y" * 90_000
        head = f"POST /{APP}/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n"
        s.sendall(head.encode() + body)
        status, _, answer = read_response(s, bytearray())
        assert status == b"HTTP/1.1 200 OK" and answer.endswith(body)


def test_many_pipelined_requests_from_a_client_that_reads_late(site: Site) -> None:
    """300 requests of 20 KB (6 MB) sent before any answer is read: the server parses
    a bounded amount ahead (its reading pauses, so the sender blocks) and writes at the
    pace the client reads (6 MB of answers do not fit in the sockets' buffers); every
    answer comes, in order."""
    bodies = [str(i).encode() * (20_000 // len(str(i))) for i in range(300)]
    data = b"".join(f"POST /{APP}/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(b)}\r\n\r\n"
                    .encode() + b for b in bodies)
    with site.connect() as s:
        s.settimeout(30)
        writer = threading.Thread(target=s.sendall, args=(data,))
        writer.start()
        time.sleep(1.0)  # nothing read yet: answers pile up
        buf = bytearray()
        for i, expected in enumerate(bodies):
            status, _, body = read_response(s, buf)
            assert status == b"HTTP/1.1 200 OK" and body == b"POST " + expected, i
        writer.join(30)


@pytest.mark.parametrize("method", ["BREW", "PROPFIND", "MKCALENDAR", "X-CUSTOM_1", "get", "Q!#$%&'*+.^`|~"])
def test_extension_methods_reach_the_app_as_sent(site: Site, method: str) -> None:
    """HTTP allows any token as a method and Kinode forwards it: llhttp knows a fixed
    list, so porch parses the others as POST and keeps their name. With a body, kept
    alive, sent in pieces (the method split across reads), and with leading empty lines."""
    head = f"{method} /{APP}/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi"
    with site.connect() as s:
        buf = bytearray()
        s.sendall(head.encode())
        status, _, body = read_response(s, buf)
        assert status == b"HTTP/1.1 200 OK" and body == method.encode() + b" hi", body
        for piece in (b"\r\n" + head[:2].encode(), head[2:7].encode(), head[7:].encode()):
            s.sendall(piece)
            time.sleep(0.05)
        assert read_response(s, buf)[2] == method.encode() + b" hi"
        s.sendall(f"GET /{APP}/echo HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        assert read_response(s, buf)[2] == b"GET "


@pytest.mark.parametrize("request_", [
    b"BR\x01W / HTTP/1.1\r\nHost: localhost\r\n\r\n",  # a control byte in the method
    b"B" * 100 + b" / HTTP/1.1\r\nHost: localhost\r\n\r\n",  # no space within 64 bytes
    b"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost\r\n\r\nGET / HTTP/1.1\r\n\r\n",
], ids=["control-byte", "method-too-long", "connect"])
def test_what_is_not_a_method_is_not_forwarded(site: Site, request_: bytes) -> None:
    with site.connect() as s:
        s.sendall(request_)
        status, _, _ = read_response(s, bytearray())
        assert status[9:12] in (b"400", b"404", b"405"), status
        assert not status.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("bad", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n",
    b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
], ids=["400", "413", "431"])
def test_a_refused_request_pipelined_behind_others_is_answered_after_them(site: Site, bad: bytes) -> None:
    """A client pipelines two good requests and a bad one: the good ones get their own
    answers, in order, and the refusal comes third, then the close (answering the
    refusal first would hand it to the wrong request)."""
    good = b"".join(f"POST /{APP}/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nn{i}".encode()
                    for i in range(2))
    with site.connect() as s:
        s.sendall(good + bad)
        buf = bytearray()
        for i in range(2):
            status, _, body = read_response(s, buf)
            assert status == b"HTTP/1.1 200 OK" and body == f"POST n{i}".encode(), (i, status, body)
        status, headers, _ = read_response(s, buf)
        assert status[9:12] in (b"400", b"413", b"431"), status
        assert headers["connection"] == "close"
        assert closed(s)


def test_trailers_never_reach_the_app_as_headers(site: Site) -> None:
    """Trailer fields after a chunked body arrive after every check made on the head
    (Host, login, proxy headers): they are dropped, for the request answered and for one
    queued behind it (whose headers were still being collected)."""
    chunked = (f"POST /{APP}/headers HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
               "3\r\nabc\r\n0\r\nX-Trailer: 1\r\nCookie: a=b\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n").encode()
    slow = f"POST /{APP}/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi".encode()
    with site.connect() as s:
        s.sendall(chunked + slow + chunked)
        buf = bytearray()
        names = [read_response(s, buf)[2] for _ in range(3)]
    for got in (names[0], names[2]):
        assert got.split() == [b"host", b"transfer-encoding", b"x-request-id"], got


@pytest.mark.parametrize("piece", [
    b"X-T: " + b"a" * 1000 + b"\r\n",  # endless trailer fields
    b"X-T: " + b"a" * 1000,  # one endless trailer value
    b"1;ext=" + b"e" * 1000 + b"\r\nx\r\n",  # chunks of one byte, each with a long extension
], ids=["fields", "one-value", "chunk-extensions"])
def test_endless_trailers_are_refused_not_buffered(site: Site, piece: bytes) -> None:
    """A chunked body's last chunk followed by trailers that never end: the worker reads
    at most about a head's worth (max_header_bytes) of them, answers 431 and closes,
    instead of buffering them while the client sends (a 480 MB stream of trailer fields
    grew the worker to 600 MB)."""
    start = f"POST /{APP}/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    lead = b"3\r\nabc\r\n" + (b"0\r\n" if not piece.startswith(b"1;") else b"")
    with site.connect() as s:
        s.sendall(start.encode() + lead)
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                s.sendall(piece * 16)
                sent += len(piece) * 16
        except OSError:
            pass  # closed by the server: what it answered is still readable
        assert sent < 64 * 1024 * 1024, "the server kept reading"
        status, headers, _ = read_response(s, bytearray())
        assert status.startswith(b"HTTP/1.1 431 "), status
        assert headers["connection"] == "close"


def test_the_absolute_form_is_served_and_its_authority_is_the_host(site: Site) -> None:
    """RFC 9112 3.2.2: a server accepts a request target in absolute form and takes its
    authority as the Host, whatever Host header came with it: the Host rules judge the
    authority (a foreign one is refused even beside an allowed Host header)."""
    with site.connect() as s:
        buf = bytearray()
        target = f"http://localhost:{site.port}/{APP}/echo?x=1"
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        assert read_response(s, buf)[:3:2] == (b"HTTP/1.1 200 OK", b"GET ")
        s.sendall(f"GET http://127.0.0.1/{APP}/echo HTTP/1.1\r\nHost: evil.example\r\n\r\n".encode())
        assert read_response(s, buf)[0] == b"HTTP/1.1 200 OK"
    for target in (f"http://evil.example/{APP}/echo", f"http://user@localhost/{APP}/echo"):
        with site.connect() as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert read_response(s, bytearray())[0].startswith(b"HTTP/1.1 400 "), target


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/0.9"])
def test_versions_other_than_1_0_and_1_1_are_505(site: Site, version: str) -> None:
    with site.connect() as s:
        s.sendall(f"GET /{APP}/echo {version}\r\nHost: localhost\r\n\r\n".encode())
        status, headers, _ = read_response(s, bytearray())
        assert status.startswith(b"HTTP/1.1 505 "), status  # llhttp reads both: porch refuses them
        assert headers["connection"] == "close"


def test_a_stream_of_empty_lines_is_dropped_not_kept(site: Site) -> None:
    """Empty lines before a request are allowed (RFC 9112 2.2) and dropped as they come
    (they were kept and rescanned at every read: memory and CPU growing with what was
    sent, which this test does not measure); the request after 2 MB of them is served,
    with reads split inside a CRLF too."""
    with site.connect() as s:
        s.settimeout(30)
        for _ in range(32):
            s.sendall(b"\r\n" * 32768)
            s.sendall(b"\r")  # a read may end between the CR and the LF of an empty line
            time.sleep(0.01)
            s.sendall(b"\n")
        s.sendall(f"GET /{APP}/echo HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        assert read_response(s, bytearray())[:3:2] == (b"HTTP/1.1 200 OK", b"GET ")


def test_a_head_of_too_many_fields_is_431(site: Site) -> None:
    """Each header field is an object in the worker: a head of 300 tiny fields (1.8 KB,
    under max_header_bytes) is refused, one of 100 is served."""
    for count, expected in ((100, b"HTTP/1.1 200 OK"), (300, b"HTTP/1.1 431 ")):
        fields = "".join(f"x{i}: y\r\n" for i in range(count))
        with site.connect() as s:
            s.sendall(f"GET /{APP}/echo HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n".encode())
            assert read_response(s, bytearray())[0].startswith(expected), count

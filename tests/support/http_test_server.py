"""A small real HTTP + WebSocket server on loopback for the http-client tests and bench.

httpbin does not run with the installed Werkzeug, so this is the subset the tests need,
written with Tornado. Run it in a thread (`TestServer().start()`) or as its own process
(`python tests/support/http_test_server.py`, prints the port; the bench does this so
the server does not share the measuring process's GIL).

HTTP endpoints (any method, extension methods included):
  /echo              JSON: method, path, query, args, headers (every line, in order), body (hex)
  /status/N          status N, body "status N"
  /redirect/N        302 to /redirect/N-1 ... /redirect/0 answers "redirected"
  /redirect-to?url=U&status=S   redirect (status S, default 302) to U
  /delay/S           answers "slept S" after S seconds
  /bytes/N[?chunked=1]   N bytes (byte i = i % 251), with Content-Length or chunked
  /drip?n=N&interval=S   headers at once, then one byte every S seconds
  /headers           repeated response headers (two Set-Cookie, two X-Multi), non-ASCII value
  /gzip              a gzip-compressed body with Content-Encoding: gzip
  /hello             "hello" (the benchmark's target)
  /stats             JSON of the counters below
WebSocket endpoints:
  /ws                echoes text and binary; text commands: "close" (server closes, code
                     4000), "ping:X" (server pings with payload X), "id" (this
                     connection's serial), "headers" (handshake headers as JSON);
                     a pong from the client is answered with text "pong:<payload>"
  /ws-slow?delay=S   same, after a handshake delayed by S seconds

`GreetServer` is a raw-socket WebSocket server that writes its 101 answer and a first
text frame ("hello") in one send, so the client receives both in the same read: the
frame arrives before the client's handshake future has even been seen as done.

`StalledServer` is a raw-socket WebSocket server that completes the handshake and then
never reads again, with a small receive buffer: what the client writes piles up on the
client's side (its send-queue cap is what the tests then see).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import hashlib
import json
import socket
import threading
import time
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web
import tornado.websocket


class _AnyMethod(tuple[str, ...]):
    def __contains__(self, item: object) -> bool:
        return True


class State:
    """Counters the tests read to see what happened on the server's side."""

    def __init__(self) -> None:
        self.ws_serial = 0
        self.ws_open: set[int] = set()
        self.ws_closed: list[int] = []
        self.drips_started = 0
        self.drips_cut: list[float] = []  # seconds from start to the client going away
        self.requests = 0

    def as_json(self) -> dict[str, Any]:
        return {"ws_open": sorted(self.ws_open), "ws_closed": self.ws_closed,
                "drips_started": self.drips_started, "drips_cut": self.drips_cut,
                "requests": self.requests}


class Base(tornado.web.RequestHandler):
    SUPPORTED_METHODS = _AnyMethod()  # type: ignore[assignment]

    @property
    def state(self) -> State:
        return self.application.settings["state"]  # type: ignore[no-any-return]

    def check_xsrf_cookie(self) -> None:
        pass

    def compute_etag(self) -> None:
        return None


class Echo(Base):
    def prepare(self) -> None:
        self.state.requests += 1
        req = self.request
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({
            "method": req.method,
            "version": req.version,
            "path": req.path,
            "query": req.query,
            "args": [[k, v.decode()] for k, vs in req.query_arguments.items() for v in vs],
            "headers": [[k, v] for k, v in req.headers.get_all()],
            "body": req.body.hex(),
        }))


class Status(Base):
    def prepare(self) -> None:
        code = int(self.path_args[0]) if self.path_args else int(self.request.path.rsplit("/", 1)[1])
        self.set_status(code)
        if code in (204, 304):
            self.finish()
        else:
            self.finish(f"status {code}")


class Redirect(Base):
    def prepare(self) -> None:
        n = int(self.request.path.rsplit("/", 1)[1])
        if n > 0:
            self.redirect(f"/redirect/{n - 1}")
        else:
            self.finish("redirected")


class RedirectTo(Base):
    def prepare(self) -> None:
        self.set_status(int(self.get_query_argument("status", "302")))
        self.set_header("Location", self.get_query_argument("url"))
        self.finish()


class Delay(Base):
    async def prepare(self) -> None:
        seconds = float(self.request.path.rsplit("/", 1)[1])
        await asyncio.sleep(seconds)
        self.finish(f"slept {seconds:g}")


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


class Bytes(Base):
    async def prepare(self) -> None:
        n = int(self.request.path.rsplit("/", 1)[1])
        body = pattern(n)
        if self.get_query_argument("chunked", ""):
            for i in range(0, n, 65536):
                self.write(body[i:i + 65536])
                await self.flush()
            self.finish()
        else:
            self.set_header("Content-Length", str(n))
            self.finish(body)


class Drip(Base):
    async def prepare(self) -> None:
        n = int(self.get_query_argument("n", "100"))
        interval = float(self.get_query_argument("interval", "0.1"))
        self.state.drips_started += 1
        self._start = time.monotonic()
        self._gone = False
        await self.flush()  # headers now, body later
        for _ in range(n):
            if self._gone:
                return
            await asyncio.sleep(interval)
            self.write(b"x")
            try:
                await self.flush()
            except tornado.iostream.StreamClosedError:
                return
        self.finish()

    def on_connection_close(self) -> None:
        self._gone = True
        self.state.drips_cut.append(time.monotonic() - self._start)


class Headers(Base):
    def prepare(self) -> None:
        self.add_header("Set-Cookie", "a=1; Path=/")
        self.add_header("Set-Cookie", "b=2; Path=/")
        self.add_header("X-Multi", "one")
        self.add_header("X-Multi", "two")
        self.set_header("X-Unicode", "caf\u00e9".encode().decode("latin-1"))
        self.finish("headers")


class Gzip(Base):
    def prepare(self) -> None:
        self.set_header("Content-Encoding", "gzip")
        self.set_header("Content-Type", "text/plain")
        self.finish(gzip.compress(b"compressed " * 100))


class Hello(Base):
    def prepare(self) -> None:
        self.finish("hello")


class Stats(Base):
    def prepare(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.state.as_json()))


class Ws(tornado.websocket.WebSocketHandler):
    @property
    def state(self) -> State:
        return self.application.settings["state"]  # type: ignore[no-any-return]

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        self.state.ws_serial += 1
        self.serial = self.state.ws_serial
        self.state.ws_open.add(self.serial)

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.write_message(message, binary=True)
        elif message == "close":
            self.close(4000, "asked to")
        elif message.startswith("ping:"):
            self.ping(message[5:].encode())
        elif message == "id":
            self.write_message(str(self.serial))
        elif message == "headers":
            self.write_message(json.dumps([[k, v] for k, v in self.request.headers.get_all()]))
        else:
            self.write_message(message)

    def on_pong(self, data: bytes) -> None:
        self.write_message("pong:" + data.decode(errors="replace"))

    def on_close(self) -> None:
        self.state.ws_open.discard(self.serial)
        self.state.ws_closed.append(self.serial)


class WsSlow(Ws):
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(float(self.get_query_argument("delay", "2")))
        await super().get(*args, **kwargs)


def make_app(state: State) -> tornado.web.Application:
    return tornado.web.Application([
        (r"/echo.*", Echo),
        (r"/status/\d+", Status),
        (r"/redirect/\d+", Redirect),
        (r"/redirect-to", RedirectTo),
        (r"/delay/[0-9.]+", Delay),
        (r"/bytes/\d+", Bytes),
        (r"/drip", Drip),
        (r"/headers", Headers),
        (r"/gzip", Gzip),
        (r"/hello", Hello),
        (r"/stats", Stats),
        (r"/ws", Ws),
        (r"/ws-slow", WsSlow),
    ], state=state, websocket_ping_interval=None)


class TestServer:
    """The server on 127.0.0.1 in a daemon thread with its own event loop."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.state = State()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http-test-server", daemon=True)

    def start(self) -> TestServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test server did not start")
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        server = tornado.httpserver.HTTPServer(make_app(self.state))
        server.add_sockets(sockets)
        loop.call_soon(self._ready.set)
        loop.run_forever()
        server.stop()
        loop.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _switching_protocols(conn: socket.socket) -> bytes | None:
    """Read a WebSocket handshake from `conn`; the 101 answer to send, or None if the
    client went away first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    key = next(line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")


class GreetServer:
    """Answers each WebSocket handshake with 101 + a "hello" text frame in one write,
    then holds the connection until the client closes it."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/greet"
        threading.Thread(target=self._serve, name="greet-server", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            answer = _switching_protocols(conn)
            if answer is None:
                return
            conn.sendall(answer + b"\x81\x05hello")
            while conn.recv(4096):
                pass

    def close(self) -> None:
        self._sock.close()


class StalledServer:
    """Completes each WebSocket handshake, then never reads from the connection again.

    SO_RCVBUF is set on the listening socket before listen(), so accepted connections
    start with that small window: the client's writes stop being taken almost at once
    and pile up in the client. `connections` holds the accepted sockets, in order."""

    def __init__(self, rcvbuf: int = 4096) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        self.port = self._sock.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/stalled"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, name="stalled-server", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            answer = _switching_protocols(conn)
            if answer is None:
                conn.close()
                continue
            conn.sendall(answer)
            self.connections.append(conn)  # and never read from it again

    def drain_until_closed(self, index: int, timeout: float) -> bool:
        """Start reading connection `index` at last; True if the client has closed it
        (EOF or reset) within `timeout` seconds."""
        conn = self.connections[index]
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            conn.settimeout(max(0.01, give_up - time.monotonic()))
            try:
                if not conn.recv(1 << 20):
                    return True
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
        return False

    def close(self) -> None:
        self._sock.close()
        for conn in self.connections:
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async def run() -> None:
        sockets = tornado.netutil.bind_sockets(args.port, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(make_app(State()))
        server.add_sockets(sockets)
        print(sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()

"""`porch http-client` / `python -m porch.http_client`: run the node's http-client.

One asyncio loop owns the kernel connection (the stub is not thread-safe): it decodes
each action, answers what it can at once (bad method, URL, version; policy denials;
every WebSocket action), and hands HTTP requests to a thread pool running `requests`.
Workers post their outcome back to the loop, which sends the reply; a slow remote
therefore holds one worker thread, never the loop or the other requests.

The open WebSocket connections are kept in <home>/state/http-client-ws.json: at start,
before serving, the openers of connections a killed predecessor left behind are told
WebSocketClose; a clean stop (SIGTERM) closes the connections and tells them at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from porch.address import HTTP_CLIENT, is_reserved
from porch.http_client import results
from porch.http_client.body import Body, InflightBudget
from porch.http_client.fetch import Fetched, Fetcher, Outgoing, monotonic_deadline
from porch.http_client.figures import ClientFigures, status_class
from porch.http_client.headers import request_headers
from porch.http_client.record import FILE_NAME, WsRecord
from porch.http_client.results import ClientFailure
from porch.http_client.settings import HttpClientSettings, load_settings
from porch.http_client.validate import SPOKEN_VERSIONS, parse_absolute_url, valid_method, valid_version
from porch.http_client.watchdog import Watchdog
from porch.http_client.websockets import WsClients
from porch.link.fds import BlobFile
from porch.node.config import ConfigError
from porch.node.home import NodeHome
from porch.node.startup import start_service
from porch.process.aio import AsyncProcess
from porch.process.message import Blob, KernelRefused, KernelUnreachable, Message, PorchError
from porch.throttle import Every
from porch.wire import http_pb2, now_ms

log = logging.getLogger("porch.http_client")


class HttpClientService:
    def __init__(self, proc: AsyncProcess, settings: HttpClientSettings,
                 state_dir: Path | None = None, metrics: bool = True) -> None:
        self.proc = proc
        self.settings = settings
        self.policy = settings.policy()
        self.loop = asyncio.get_running_loop()
        self.watchdog = Watchdog()
        self.fetcher = Fetcher(
            self.policy,
            max_response_bytes=settings.max_response_bytes,
            max_redirects=settings.max_redirects,
            pool_maxsize=settings.workers,
            env_proxies=settings.env_proxies,
            watchdog=self.watchdog,
            budget=InflightBudget(settings.inflight_limit),
        )
        self.pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="http-client-worker")
        # Requests handed to the pool (on the loop) and taken up by a worker (under the
        # lock: several workers): the difference is how many wait for a worker.
        self._submitted = 0
        self._taken = 0
        self._taken_lock = threading.Lock()
        self._busy_log = Every()
        self._undelivered_log = Every()
        self.ws = WsClients(
            self._respond,
            self._send,
            proc.watch,
            policy=self.policy,
            max_connections=settings.max_ws_connections,
            max_message_bytes=settings.ws_max_message_bytes,
            send_queue_bytes=settings.ws_send_queue_bytes,
            deadline_s=self._seconds_left,
            record=WsRecord(state_dir / FILE_NAME) if state_dir is not None else None,
        )
        # What the node's scrape shows (docs/metrics.md); counted only when enabled.
        self.figures = ClientFigures(metrics)
        self.figures.add_gauges(lambda: self._submitted - self._taken, lambda: self._busy_workers,
                                self.ws)
        self._busy_workers = 0
        if metrics:
            self.ws.figures = self.figures

    # ------------------------------------------------------------------ dispatch

    def on_request(self, msg: Message) -> None:
        action = results.decode_action(msg.body)
        if action is None:
            log.info("malformed request %d from %s (%d bytes)", msg.id, msg.source, len(msg.body))
            if msg.expects_response:  # only then, as Kinode
                self._respond(msg, results.error("MalformedRequest"))
            return
        which = action.WhichOneof("action")
        if which == "http":
            self._http(msg, action.http)
        elif which == "metrics":
            self._metrics(msg)
        else:
            self.ws.handle(msg, action)

    def _metrics(self, msg: Message) -> None:
        """The figures, for the node's services only (who calls what is theirs to see)."""
        if not msg.expects_response:
            return
        if not is_reserved(msg.source):
            log.info("refused the figures to %s: only the node's services may ask", msg.source)
            self._respond(msg, results.error("MalformedRequest"))
            return
        self._respond(msg, self.figures.snapshot())

    def _http(self, msg: Message, req: http_pb2.OutgoingHttpRequest) -> None:
        try:
            outgoing = self._check(msg, req)
        except ClientFailure as exc:
            self.figures.ended(msg.source, exc.kind)
            if exc.kind == "Denied":
                log.warning("denied request by %s to %s: %s", msg.source, req.url, exc.fields.get("message"))
            if msg.expects_response:
                self._respond(msg, results.failure(exc))
            return
        waiting = self._submitted - self._taken
        if waiting >= self.settings.max_waiting_requests:
            self._busy(msg, outgoing, waiting)
            return
        self._submitted += 1
        self.pool.submit(self._work, msg, outgoing)

    def _busy(self, msg: Message, req: Outgoing, waiting: int) -> None:
        """Every worker busy and max_waiting_requests waiting: fail this one at once."""
        self.figures.ended(msg.source, "Busy")
        refused = self._busy_log.due()
        if refused:
            log.warning("busy: refused %d request(s), the last %d from %s to %s: %d workers busy, "
                        "%d requests waiting (max_waiting_requests)", refused, msg.id, msg.source,
                        req.url, self.settings.workers, waiting)
        if msg.expects_response:
            self._respond(msg, results.failure(ClientFailure(
                "ExecuteRequestFailed",
                message=f"http-client busy: all {self.settings.workers} workers running requests and "
                        f"{waiting} waiting (max_waiting_requests); try again later")))

    def _check(self, msg: Message, req: http_pb2.OutgoingHttpRequest) -> Outgoing:
        """docs/kinode.md §6.2 steps 1-5, in Kinode's order, plus the node's policy."""
        if not valid_method(req.method):
            raise ClientFailure("BadMethod", method=req.method)
        parsed = parse_absolute_url(req.url)
        if parsed is None:
            raise ClientFailure("BadUrl", url=req.url)
        version = req.version if req.HasField("version") else "HTTP/1.1"
        if not valid_version(version):
            raise ClientFailure("BadVersion", version=version)
        if not parsed.host:
            raise ClientFailure("BuildRequestFailed", message=f"URL {req.url!r} has no host")
        if parsed.scheme not in ("http", "https"):
            raise ClientFailure("ExecuteRequestFailed",
                                message=f"URL scheme {parsed.scheme!r} is not supported")
        reason = self.policy.check(parsed.host)
        if reason is not None:
            raise ClientFailure("Denied", url=req.url, message=reason)
        if version not in SPOKEN_VERSIONS:
            raise ClientFailure("ExecuteRequestFailed",
                                message=f"{version} is not spoken by this node's http-client "
                                f"(it speaks {' and '.join(SPOKEN_VERSIONS)})")
        headers, skipped = request_headers((h.name, h.value) for h in req.headers)
        if skipped:
            log.debug("request %d from %s: skipped headers %s", msg.id, msg.source, "; ".join(skipped))
        deadline = monotonic_deadline(msg.deadline_ms if msg.expects_response else 0,
                                      self.settings.default_timeout_s, now_ms())
        body = msg.blob.bytes if msg.blob is not None else b""
        return Outgoing(req.method, req.url, headers, body, deadline, version)

    # ------------------------------------------------------------------ workers

    def _work(self, msg: Message, req: Outgoing) -> None:
        """In a worker thread: run the request, post the reply to the loop."""
        with self._taken_lock:
            self._taken += 1
            self._busy_workers += 1
        started = time.monotonic()
        try:
            outcome: Fetched | ClientFailure = self.fetcher.fetch(req)
        except ClientFailure as exc:
            outcome = exc
        except Exception as exc:  # a bug: still answer, and say so
            log.exception("request %d from %s to %s failed unexpectedly", msg.id, msg.source, req.url)
            outcome = ClientFailure("ExecuteRequestFailed", message=f"internal error: {exc}")
        finally:
            with self._taken_lock:
                self._busy_workers -= 1
        self.figures.ended(msg.source, outcome.kind if isinstance(outcome, ClientFailure)
                           else status_class(outcome.status), time.monotonic() - started)
        if isinstance(outcome, ClientFailure):
            level = logging.WARNING if outcome.kind == "Denied" else logging.INFO
            log.log(level, "request %d from %s: %s %s -> %s: %s", msg.id, msg.source, req.method,
                    req.url, outcome.kind, outcome.fields.get("message", ""))
            if not msg.expects_response or outcome.kind == "Timeout":
                # The kernel answers the caller SendError Timeout at this same deadline;
                # replying too would give the caller one of two answers, by a race.
                return
            body, fetched = results.failure(outcome), None
        else:
            fetched = outcome.body
            if not msg.expects_response:
                fetched.release()
                return  # fire and forget: Kinode's reply would be dropped anyway
            body = results.http_ok(outcome.status, outcome.headers)
        if msg.deadline_ms and now_ms() > msg.deadline_ms:
            if fetched is not None:
                fetched.release()
            return  # the kernel has told the caller Timeout; it would drop this
        try:
            self.loop.call_soon_threadsafe(self._respond_body, msg, body, fetched)
        except RuntimeError:  # the loop is closed: the service is stopping
            if fetched is not None:
                fetched.release()

    # ------------------------------------------------------------------ sending

    def _respond(self, msg: Message, body: bytes) -> None:
        self._respond_blob(msg, body, None)

    def _respond_blob(self, msg: Message, body: bytes, blob: Blob | BlobFile | None) -> None:
        try:
            self.proc.respond(msg, body, blob=blob)
        except PorchError as exc:  # the kernel is away: the caller gets Offline from it
            log.info("could not answer request %d from %s: %s", msg.id, msg.source, exc)

    def _respond_body(self, msg: Message, body: bytes, fetched: Body | None) -> None:
        """The answer to a fetch; its body's budget is released once it is handed over."""
        try:
            if fetched is None:
                self._respond_blob(msg, body, None)
            else:
                data = fetched.data
                self._respond_blob(msg, body, Blob(data) if isinstance(data, bytes) else data)
        finally:
            if fetched is not None:
                fetched.release()

    def _send(self, target: str, body: bytes, blob: Blob | None, id_: int) -> bool:
        """A Request to an opener (a frame, a close); False if the kernel did not take it."""
        try:
            self.proc.send_request(target, body, blob=blob, id=id_)
            return True
        except PorchError as exc:  # the kernel is away, or its queue to us is full
            undelivered = self._undelivered_log.due()
            if undelivered:
                log.warning("could not deliver %d WebSocket frame(s), the last to %s: %s",
                            undelivered, target, exc)
            return False

    def _seconds_left(self, msg: Message) -> float:
        if msg.expects_response and msg.deadline_ms:
            return (msg.deadline_ms - now_ms()) / 1000.0
        return self.settings.default_timeout_s

    def close(self) -> None:
        self.ws.close_all()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.watchdog.stop()  # cuts the requests still running: the workers end now
        self.pool.shutdown(wait=True)
        self.fetcher.close()


async def serve(home: NodeHome, settings: HttpClientSettings, metrics: bool = True) -> int:
    try:
        proc = await AsyncProcess.connect(HTTP_CLIENT, home=home.root)
    except (KernelUnreachable, KernelRefused) as exc:
        log.error("%s", exc)
        return 1
    service = HttpClientService(proc, settings, home.state_dir, metrics)
    service.ws.announce_lost()  # before serving: a new open must not be announced as lost
    proc.on_request(service.on_request)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("http-client ready on node %s: %d workers, policy %s", proc.node, settings.workers,
             "allows everything" if service.policy.allows_everything else "restricts outgoing requests")
    started = time.monotonic()
    await stop.wait()
    log.info("http-client stopping after %.0f s", time.monotonic() - started)
    service.close()
    proc.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="porch http-client",
        description="Run the http-client of a porch node: outgoing HTTP requests and WebSocket "
        "connections on behalf of processes. Normally started by `porch up`.",
    )
    parser.add_argument("--home", help="node home (default: $PORCH_HOME or ~/.porch)")
    args = parser.parse_args(argv)
    started = start_service("http-client", args.home)
    if started is None:
        return 2
    home, config = started
    try:
        settings = load_settings(config.http_client, f"{home.config_path} [http_client]")
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    return asyncio.run(serve(home, settings, config.metrics.enabled))

"""The http-server's decisions: which binding answers a request, whether the client may
reach it, and how the owning process's reply becomes the HTTP response.

Order of checks per request (docs/kinode.md §2.5: porch's order and its differences):
login/logout pages (on a secure subdomain's host: that subdomain's apps only); route
(with the app-root fallback) or 404; tombstone 404; a subdomain host serving anything
but its package's secure paths (403); secure subdomain (401 / 307 / login);
authentication (login page for browsers, 401 for API clients); local_only (403);
static content for GET; the RPC endpoint; else forward to the owning process (without
the node's login cookies) and map its reply: no such process 503 at once, no answer by
the deadline 504, died with the request or answered garbage 502. A 503 or 502 says
what happened, and only that (issue 10 item 4): the kernel not reachable (or not
keeping up) when the request could not be sent, the link to it lost (a kernel
restart: 503, the request may have been handled) with the request pending.

The forward path is callback-based (no coroutine per request): it is the hot path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Executor
from urllib.parse import parse_qs, parse_qsl

from porch.address import HOMEPAGE, KERNEL, is_reserved, is_valid
from porch.http_server import actions, pages
from porch.http_server.auth import (
    PROXY_HEADERS,
    Auth,
    cookie_name,
    cross_site,
    find_cookie,
    is_local,
    request_target,
    safe_redirect,
    strip_auth_cookies,
    subdomain_location,
    wants_html,
)
from porch.http_server.bindings import RPC_PROCESS, BindingTable, HttpBinding, Resolved, WsBinding
from porch.http_server.db import describe
from porch.http_server.exchange import HTML, JSON, NOSNIFF, PRIVATE, TEXT, Exchange, Headers, has_header
from porch.http_server.figures import HttpFigures
from porch.http_server.links import Links
from porch.http_server.paths import normalize
from porch.http_server.ratelimit import RateLimiter, client_address, rate_key
from porch.http_server.rpc import RpcCall, parse_rpc, rpc_reply_body
from porch.http_server.rpc_auth import rpc_refusal
from porch.http_server.settings import HttpServerSettings
from porch.http_server.state import StateNotSaved
from porch.http_server.writable import StateHealth
from porch.process.aio import AsyncProcess
from porch.process.message import Blob, Message, NoCapability, Offline, SendError, Timeout
from porch.throttle import Every
from porch.wire import http_pb2

log = logging.getLogger("porch.http_server")

# RFC 9110 5.1 and 5.5: a field name is a token; a field value is visible ASCII,
# obs-text (0x80-0xFF: Latin-1) and spaces/tabs between them. Nothing else can go on
# the wire (no control byte, no DEL, no character beyond Latin-1).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
MAX_LOGIN_BODY = 16 * 1024
# Local-only operational status (in-flight requests, bindings, sockets), under the
# server's own process id so that no app can bind it.
STATUS_PATH = "/http-server:distro:sys/status"
# The request id the app gets (and the access log shows), in IncomingHttpRequest's
# headers; one a client sent is replaced.
REQUEST_ID_HEADER = "x-request-id"
# Commits one binding before it is served; raises StateNotSaved when it cannot.
Persist = Callable[[HttpBinding | WsBinding], None]


LINK_LOST = "the node's kernel went away with the request pending (it may have been handled)"


def _text(status: int, message: str) -> tuple[int, Headers, bytes]:
    return status, [TEXT], (message + "\n").encode()


def _kernel_unavailable(proc: AsyncProcess) -> str:
    """Why a request could not be sent: the link is down, or the kernel is not
    reading fast enough (the link's queue is full)."""
    if proc.connected:
        return "the node's kernel is not keeping up"
    return "the node's kernel is not reachable"


class Gateway:
    def __init__(
        self,
        settings: HttpServerSettings,
        node: str,
        table: BindingTable,
        auth: Auth,
        proc: AsyncProcess,
        persist: Persist,
        executor: Executor,
        rpc: AsyncProcess | None = None,
        rpc_token: str = "",
        health: StateHealth | None = None,
    ) -> None:
        self.settings = settings
        self.node = node
        self.table = table
        self.auth = auth
        self.proc = proc
        # RPC messages go out as rpc:distro:sys, with the capabilities porch.toml grants
        # that id, never as the http-server (None: it could not register; RPC is 503).
        self.rpc = rpc
        self.rpc_token = rpc_token
        self.persist = persist
        # Whether the state can be written (None: not tracked); /status shows it.
        self.health = health
        self._not_saved_log = Every(10.0)
        self.executor = executor
        self.login_limiter = RateLimiter(settings.login_attempts_per_minute)
        self._trusted_proxies = settings.trusted_networks()
        self.default_timeout = settings.request_timeout_s
        self._subdomains = table.secure_subdomains()
        self.inflight = 0
        self._bad_answer_log = Every()
        self._rpc_refused_log = Every()
        self._tasks: set[asyncio.Future[None]] = set()
        # Numbers other layers add to /status (the WebSocket layer: open sockets).
        self.status_extra: dict[str, Callable[[], int]] = {}
        # Called with the full path after a WebSocket binding changed (the WebSocket
        # layer closes what was opened on it).
        self.on_ws_binding: Callable[[str], None] | None = None
        # A member worker's check that its bindings are the database's
        # (porch.http_server.follow), run before each request is routed; None: the primary.
        self.refresh: Callable[[], None] | None = None
        # Direct links to the processes of direct bindings (porch.http_server.links);
        # None: every request goes through the kernel.
        self.links: Links | None = None
        # Extra action handlers (the WebSocket layer registers push/close here).
        self.extra_actions: dict[str, Callable[[Message, str, http_pb2.HttpServerAction], bytes | None]] = {}
        # The node's figures and access log (porch.http_server.figures); counting nothing
        # unless the worker sets one that does.
        self.figures = HttpFigures(enabled=False)
        # porch's own paths under its process id that other modules answer (the scrape,
        # the node page's data and restart button): path -> handler.
        self.own_paths: dict[str, Callable[[Exchange], None]] = {}

    def pending(self) -> int:
        """Requests not answered yet: forwarded ones and those answered by a task (a
        login checking its password). A stopping worker waits for these."""
        return self.inflight + len(self._tasks)

    # ------------------------------------------------------------------ processes -> us

    def on_message(self, msg: Message) -> None:
        """An action from a process (docs/kinode.md §1)."""
        try:
            if is_reserved(msg.source):
                # The http-server itself (a message to itself), the RPC identity, the
                # http-client, the kernel: none owns a path, so none may act on one.
                log.warning("refused a message from %s: the node's services take no actions", msg.source)
                raise actions.ActionError(http_pb2.HttpServerError.InvalidSourceProcess,
                                          f"{msg.source} is a node service; it cannot act on bindings")
            which, action = actions.decode(msg.body)
            handler = self.extra_actions.get(which)
            if handler is not None:
                reply = handler(msg, which, action)
                if reply is not None and msg.expects_response:
                    self.proc.respond(msg, reply)
                return
            if which not in actions.BINDING_ACTIONS:
                raise actions.ActionError(http_pb2.HttpServerError.MalformedRequest,
                                          f"{which} is not supported")
            binding = actions.plan_binding(msg.source, which, action, msg.blob)
            path = binding.path
            try:
                self.persist(binding)  # durable first: what is served is what is saved
            except StateNotSaved as exc:
                count = self._not_saved_log.due()
                if count:
                    log.error("%s: refused %s %s: it could not be saved (%s)%s", msg.source, which,
                              path or "/", exc.reason, f"; {count} refused since the last line"
                              if count > 1 else "")
                if msg.expects_response:
                    self.proc.respond(msg, actions.err(
                        http_pb2.HttpServerError.StateNotSaved,
                        f"{which} {path or '/'} not applied: the node cannot save it ({exc.reason})"))
                return
            self.table.bind(binding)
            websocket = which.startswith("web_socket")
            self._subdomains = self.table.secure_subdomains()
            if websocket and self.on_ws_binding is not None:
                self.on_ws_binding(path)
            log.info("%s: %s %s", msg.source, which, path or "/")
            if msg.expects_response:
                self.proc.respond(msg, actions.ok())
        except actions.ActionError as exc:
            log.info("%s: refused %s", msg.source, exc)
            if msg.expects_response:
                self.proc.respond(msg, actions.err(exc.kind, exc.detail))

    # ------------------------------------------------------------------ clients -> us

    def bindings_reloaded(self) -> None:
        self._subdomains = self.table.secure_subdomains()

    def dispatch(self, ex: Exchange) -> None:
        if self.refresh is not None:
            self.refresh()
        path = normalize(ex.path)
        host = ex.header("Host") or "localhost"
        hostname = _hostname(host)
        label = hostname.split(".", 1)[0]
        # A secure subdomain's own host (issue 9 item 7): it serves that package's
        # secure paths and its own login and logout, nothing of the main node's, and
        # never issues or accepts the node's main cookie.
        subdomain = label if "." in hostname and label in self._subdomains else None
        if path == "/login":
            ex.bound = path
            task = asyncio.ensure_future(self._login(ex, subdomain))
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(lambda t: self._task_done(ex, t))
            return
        if path == "/logout":
            ex.bound = path
            self._logout(ex, subdomain)
            return
        if path == STATUS_PATH and subdomain is None:
            ex.bound = path
            self._status(ex)
            return
        own = self.own_paths.get(path) if subdomain is None else None
        if own is not None:
            ex.bound = path
            own(ex)
            return
        resolved = self.table.resolve_http(path)
        if resolved is None:
            if path == "" and self.table.http.get("") is None and subdomain is None:
                ex.bound = "/"
                self._homepage(ex)
            elif path in NODE_PATHS and subdomain is None and ex.method in ("GET", "HEAD"):
                ex.bound = path
                self._node_path(ex, path)
            else:
                self._not_found(ex)
            return
        binding = resolved.binding
        if binding.app is None:
            self._not_found(ex)
            return
        ex.app = binding.app
        ex.bound = binding.path
        if subdomain is not None and binding.secure_subdomain != subdomain:
            # A secure subdomain origin serves only its own package (Kinode's D8 fixed: docs/kinode.md §9).
            ex.respond(*_text(403, "secure subdomain can only serve its associated package"))
            return
        if (ex.path == "/" + binding.app and binding.path == ex.path
                and ex.method in ("GET", "HEAD") and wants_html(ex.header("Accept"))):
            # A browser at an app's root without the trailing slash: its page's relative
            # URLs ("style.css") would resolve beside the app, not under it. API
            # clients get the binding itself, as in Kinode.
            ex.respond(301, [_location(request_target(ex.path + "/", ex.query))], b"")
            return
        if binding.secure_subdomain is not None:
            if label == "":
                ex.respond(*_text(401, "attempted to access secure subdomain without host"))
                return
            if label != binding.secure_subdomain:
                self._to_subdomain(ex, binding.secure_subdomain, host)
                return
            if not self.auth.authorized(ex.header("Cookie"), binding.app):
                self._unauthorized(ex, binding.app)
                return
        elif binding.authenticated and not self.auth.authorized(ex.header("Cookie")):
            self._unauthorized(ex, None)
            return
        if binding.local_only and not self._local(ex):
            ex.respond(403, [], b"")
            return
        if binding.static is not None and ex.method == "GET":
            static = binding.static
            # The app's content, served by porch: nosniff, but the app's framing rules.
            headers: Headers = [("ETag", static.etag), NOSNIFF]
            if binding.authenticated:
                headers.append(PRIVATE)
            if ex.header("If-None-Match") == static.etag:
                ex.respond(304, headers, b"", own=False)
            else:
                headers.insert(0, ("Content-Type", static.mime or "text/plain"))
                ex.respond(200, headers, static.body, own=False)
            return
        if binding.app == RPC_PROCESS:
            self._rpc(ex)
            return
        self._forward(ex, resolved, hostname, path)

    def _local(self, ex: Exchange) -> bool:
        proxied = any(ex.header(h) is not None for h in PROXY_HEADERS)
        return is_local(ex.peer_ip, proxied)

    # ------------------------------------------------------------------ forwarding

    def _forward(self, ex: Exchange, resolved: Resolved, hostname: str, path: str) -> None:
        binding = resolved.binding
        app = binding.app
        assert app is not None
        rid = ex.rid = self.figures.request_id()
        request = http_pb2.HttpServerRequest()
        incoming = request.http
        incoming.method = ex.method
        incoming.url = "http://" + hostname + path
        incoming.bound_path = binding.path
        if ex.peer_ip is not None:
            incoming.source_socket_addr = f"{ex.peer_ip}:{ex.peer_port}"
        add_header = incoming.headers.add
        for name, value in ex.header_items():
            lname = name.lower()
            if lname == "cookie":  # the node's login is not the app's to see (issue 9 item 7)
                kept = strip_auth_cookies(value, self.node, app)
                if kept is None:
                    continue
                value = kept
            elif lname == REQUEST_ID_HEADER:  # the node's, not the client's
                continue
            add_header(name=lname, value=value)
        add_header(name=REQUEST_ID_HEADER, value=rid)
        if resolved.params:
            incoming.url_params.update(resolved.params)
        if ex.query:
            add_query = incoming.query_params.add
            for name, value in parse_qsl(ex.query, keep_blank_values=True):
                add_query(name=name, value=value)
        timeout = binding.timeout_ms / 1000 if binding.timeout_ms else self.default_timeout
        body, blob = request.SerializeToString(), Blob(ex.body)
        links = self.links if binding.direct else None
        # On the app's direct link if it took one (docs/direct.md), else through the kernel.
        if links is not None and (sent := links.request_future(app, body, timeout, blob)) is not None:
            id_, fut = sent
            forget = links.forget
        else:
            try:
                id_, fut = self.proc.request_future(app, body, timeout=timeout, blob=blob)
            except Offline:
                ex.respond(*_text(503, _kernel_unavailable(self.proc)))
                return
            forget = self.proc.forget
            if links is not None:  # it answers: offer it a link
                fut.add_done_callback(lambda f: None if f.cancelled() or f.exception() is not None
                                      else links.answered(app))
        self.inflight += 1
        ex.forwarded = time.monotonic()

        def gone() -> None:
            # The client left: forget the request (a late answer is dropped by the stub).
            self.inflight -= 1
            forget(id_)

        ex.on_close(gone)
        private = binding.authenticated
        fut.add_done_callback(lambda f: self._reply(ex, app, f, private))

    def _reply(self, ex: Exchange, app: str, fut: asyncio.Future[Message], private: bool) -> None:
        if ex.done:
            return  # the client went away; `gone` already counted it
        self.inflight -= 1
        if fut.cancelled():
            return
        figures = self.figures
        if figures.enabled:
            figures.answered(app, time.monotonic() - ex.forwarded)
        exc = fut.exception()
        if exc is None:
            msg = fut.result()
            try:
                status, headers, body = http_response(msg)
            except BadAnswer as bad:
                count = self._bad_answer_log.due()
                if count:
                    log.warning("%s answered %s %s %s: 502 (%d such answer(s) since the last line)",
                                app, ex.method, ex.path, bad, count)
                ex.respond(*_text(502, f"{app} answered {bad}"))
                return
            if private and not has_header(headers, "Cache-Control"):
                headers.append(PRIVATE)
            ex.respond(status, headers, body, own=False)
        elif isinstance(exc, Timeout):
            ex.respond(*_text(504, f"{app} did not answer in time"))
        elif isinstance(exc, Offline):
            if exc.target == KERNEL:  # our link to the kernel ended with it pending
                ex.respond(*_text(503, LINK_LOST))
            elif exc.delivered:
                ex.respond(*_text(502, f"{app} went away while handling the request"))
            else:
                ex.respond(*_text(503, f"{app} is not running"))
        elif isinstance(exc, SendError):
            ex.respond(*_text(502, f"{app}: {exc.kind}"))
        else:
            log.error("forward to %s failed: %r", app, exc)
            ex.respond(*_text(500, "internal error"))

    # ------------------------------------------------------------------ porch's own paths

    def _not_found(self, ex: Exchange) -> None:
        """404: a page for a browser (with a way back to the app list); for anyone else
        Kinode's empty 404 (docs/kinode.md §12, item 12)."""
        if wants_html(ex.header("Accept")):
            ex.respond(404, [HTML], pages.not_found_page(self.node, ex.path[:200]))
        else:
            ex.respond(404, [], b"")

    def _node_path(self, ex: Exchange, path: str) -> None:
        """/our, /our.js and /amionline (Kinode's homepage serves them: the node's name
        for pages that need it, and "yes") and /favicon.ico, unless the homepage binds
        them itself. Public."""
        if path in ("/our", "/amionline"):
            # DEVIATION: text/plain (Kinode: text/html); the bodies are the same.
            headers: Headers = [TEXT]
            body = self.node.encode() if path == "/our" else b"yes"
        elif path == "/our.js":
            headers = [("Content-Type", "application/javascript; charset=utf-8")]
            body = our_js(self.node)
        else:
            headers = [("Content-Type", "image/svg+xml"), ("Cache-Control", "max-age=86400")]
            body = pages.ICON_SVG
        ex.respond(200, headers, body)

    # ------------------------------------------------------------------ auth pages

    def _unauthorized(self, ex: Exchange, subdomain_app: str | None) -> None:
        if wants_html(ex.header("Accept")):
            # Back to this page after login, if it is a safe target ("//evil.example"
            # reaches the root binding through the fallback: not one).
            target = safe_redirect(request_target(ex.path, ex.query)) or ""
            page = pages.login_page(self.node, target, subdomain_app or "")
            ex.respond(200, [HTML, ("Cache-Control", "no-store")], page)
        else:
            ex.respond(401, [TEXT, ("WWW-Authenticate", 'Cookie realm="porch", form="/login"')],
                       b"authentication required: POST /login\n")

    def _to_subdomain(self, ex: Exchange, subdomain: str, host: str) -> None:
        proto = (ex.header("X-Forwarded-Proto") or ("https" if self.settings.https else "http")).lower()
        if proto not in ("http", "https"):
            proto = "http"
        location = subdomain_location(proto, subdomain, host, request_target(ex.path, ex.query))
        if location is None:
            ex.respond(*_text(400, "no secure subdomain redirect for this Host and path"))
            return
        ex.respond(307, [("Location", location)], b"")

    def _task_done(self, ex: Exchange, task: asyncio.Future[None]) -> None:
        """A request answered by a task: one that failed still gets an answer (500),
        as a synchronous handler's exception does in the listener, never a hang."""
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("error handling %s %s", ex.method, ex.path, exc_info=exc)
            ex.respond(500, [TEXT], b"internal error\n")  # no-op if already answered

    def _client(self, ex: Exchange) -> str:
        """The login client's address: the peer, or whom a trusted proxy forwards."""
        if not self._trusted_proxies:
            return ex.peer_ip or "?"
        forwarded = [value for name, value in ex.header_items() if name.lower() == "x-forwarded-for"]
        return client_address(ex.peer_ip, forwarded, ex.header("X-Real-Ip"), self._trusted_proxies)

    async def _login(self, ex: Exchange, host_subdomain: str | None) -> None:
        """GET: the login page. POST: check the password; on a secure subdomain's host,
        log in to one of that subdomain's apps only (issue 9 item 7)."""
        host_apps = self._subdomains.get(host_subdomain, set()) if host_subdomain else None
        if ex.method == "GET":
            back = safe_redirect(_query_value(ex.query, "redirect")) or ""
            app = _host_app(host_apps, None, back) if host_apps is not None else ""
            ex.respond(200, [HTML, ("Cache-Control", "no-store")], pages.login_page(self.node, back, app or ""))
            return
        if ex.method != "POST":
            ex.respond(405, [TEXT, ("Allow", "GET, POST")], b"use GET or POST\n")
            return
        if len(ex.body) > MAX_LOGIN_BODY:
            ex.respond(*_text(413, "login body too large"))
            return
        form = "application/x-www-form-urlencoded" in (ex.header("Content-Type") or "")
        try:
            password, subdomain, asked_redirect = _login_fields(ex.body, form)
        except ValueError as exc:
            ex.respond(400, [JSON], json.dumps({"error": str(exc)}).encode())
            return
        redirect = safe_redirect(asked_redirect or _query_value(ex.query, "redirect"))
        if host_apps is not None:
            subdomain = _host_app(host_apps, subdomain, redirect)
            if subdomain is None:
                message = f"this host logs in only to {', '.join(sorted(host_apps))} (say which in subdomain)"
                ex.respond(400, [JSON], json.dumps({"error": message}).encode())
                return
        client = self._client(ex)
        key = rate_key(client)
        started = time.monotonic()
        wait = self.login_limiter.begin(key, started)
        if wait:
            log.warning("login rate limit hit by %s", client)
            retry = ("Retry-After", str(int(wait) + 1))
            message = f"Too many failed attempts from here. Try again in {retry[1]} seconds."
            if form:  # a browser without JavaScript: the form again, saying so
                page = pages.login_page(self.node, redirect or "", subdomain or "", message)
                ex.respond(429, [HTML, ("Cache-Control", "no-store"), retry], page)
            else:
                ex.respond(429, [JSON, retry], json.dumps({"error": message}).encode())
            return
        loop = asyncio.get_running_loop()
        good = await loop.run_in_executor(self.executor, self.auth.check_password, password)
        if not good:
            log.warning("failed login from %s", client)
            if form:
                page = pages.login_page(self.node, redirect or "", subdomain or "", "Wrong password.")
                ex.respond(401, [HTML, ("Cache-Control", "no-store")], page)
            else:
                ex.respond(401, [JSON], b'{"error": "wrong password"}')
            return
        self.login_limiter.succeeded(key, started)  # only failures count
        try:
            token = self.auth.issue(subdomain)
        except sqlite3.Error as exc:
            log.error("login from %s: cannot record the session: %s", client, exc)
            if self.health is not None:
                self.health.failed("recording a login session", describe(exc))
            ex.respond(*_text(503, "cannot record the session (the node's disk?)"))
            return
        cookie = ("Set-Cookie", self.auth.set_cookie(token, subdomain))
        log.info("login from %s%s", client, f" for {subdomain}" if subdomain else "")
        if redirect is not None:
            ex.respond(303, [cookie, _location(redirect)], b"")
        elif form:
            ex.respond(303, [cookie, _location("/")], b"")
        else:
            ex.respond(200, [cookie, JSON], json.dumps({"ok": True, "node": self.node}).encode())

    def _logout(self, ex: Exchange, host_subdomain: str | None) -> None:
        """End the sessions of the cookies sent (server-side: the tokens stop working
        at once, issue 9 item 5) and clear them. Refused (403) when a page of another
        site made the browser send it. On a secure subdomain's host: that host's app
        sessions only; elsewhere the node's login and, with ?app=, that app's."""
        if ex.method != "POST":
            ex.respond(405, [TEXT, ("Allow", "POST")], b"POST /logout to log out\n")
            return
        if cross_site(ex.header("Origin"), ex.header("Sec-Fetch-Site"), ex.header("Host")):
            log.warning("refused a cross-site logout (Origin %r, Sec-Fetch-Site %r)",
                        ex.header("Origin"), ex.header("Sec-Fetch-Site"))
            ex.respond(*_text(403, "logout refused: the request came from another site"))
            return
        scopes: list[str | None]
        if host_subdomain is not None:
            scopes = [*sorted(self._subdomains.get(host_subdomain, ()))]
        else:
            scopes = [None]
            app = _query_value(ex.query, "app")
            if app and is_valid(app):
                scopes.append(app)
        cookies = ex.header("Cookie")
        try:
            for scope in scopes:
                self.auth.revoke(find_cookie(cookies, cookie_name(self.node, scope)), scope)
        except sqlite3.Error as exc:
            log.error("logout: cannot end the session: %s", exc)
            if self.health is not None:
                self.health.failed("ending a login session", describe(exc))
            ex.respond(*_text(503, "cannot end the session (the node's disk?)"))
            return
        headers: Headers = [("Set-Cookie", self.auth.clear_cookie(scope)) for scope in scopes]
        if wants_html(ex.header("Accept")) or "form" in (ex.header("Content-Type") or ""):
            ex.respond(303, [*headers, _location("/login")], b"")
        else:
            ex.respond(200, [*headers, JSON], b'{"ok": true}')

    def _status(self, ex: Exchange) -> None:
        if not self._local(ex):
            ex.respond(403, [], b"")
            return
        status = {"node": self.node, "inflight": self.inflight,
                  "http_bindings": len(self.table.http) - 1, "ws_bindings": len(self.table.ws)}
        status.update({name: get() for name, get in self.status_extra.items()})
        if self.health is not None:
            status.update(self.health.status())
        ex.respond(200, [JSON], json.dumps(status).encode())

    def _homepage(self, ex: Exchange) -> None:
        if not self.auth.authorized(ex.header("Cookie")):
            self._unauthorized(ex, None)
            return
        apps = {app: path for app, path in self.table.apps().items() if app != HOMEPAGE}
        ex.respond(200, [HTML, PRIVATE], pages.homepage(self.node, apps))

    # ------------------------------------------------------------------ RPC

    def _rpc(self, ex: Exchange) -> None:
        """The RPC endpoint (rpc.py, rpc_auth.py): only for a caller with the RPC token
        or the owner's cookie and X-Porch-RPC, never for a browser page of another
        origin; the message goes out as rpc:distro:sys with that id's capabilities."""
        refusal = rpc_refusal(ex.method, ex.header, self.rpc_token,
                              lambda: self.auth.authorized(ex.header("Cookie")))
        if refusal is not None:
            count = self._rpc_refused_log.due()
            if count:
                log.warning("refused %d RPC request(s), the last from %s: %d %s", count,
                            ex.peer_ip, refusal[0], refusal[2].decode().strip())
            ex.respond(*refusal)
            return
        try:
            call: RpcCall = parse_rpc(ex.body)
        except ValueError as exc:
            ex.respond(*_text(400, str(exc)))
            return
        rpc = self.rpc
        if rpc is None:
            ex.respond(*_text(503, "RPC is unavailable: rpc:distro:sys could not register "
                              "(the http-server's log says why)"))
            return
        blob = Blob(call.data, call.mime) if call.data is not None else None
        try:
            if call.expects_response is None:
                # Fire and forget (Kinode: 200 once sent). A refusal by the kernel
                # (no capability) reaches only the log: ask with expects_response to see it.
                rpc.send_request(call.process, call.body, blob=blob, metadata=call.metadata)
                ex.respond(200, [], b"")
                return
            timeout = min(float(call.expects_response), self.default_timeout)
            id_, fut = rpc.request_future(call.process, call.body, timeout=timeout,
                                          blob=blob, metadata=call.metadata)
        except Offline:
            ex.respond(*_text(503, _kernel_unavailable(rpc)))
            return
        ex.on_close(lambda: rpc.forget(id_))

        def done(f: asyncio.Future[Message]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is None:
                # DEVIATION: application/json (Kinode says text/html for this JSON).
                ex.respond(200, [JSON], rpc_reply_body(f.result()))
            elif isinstance(exc, NoCapability):
                ex.respond(*_text(403, f"{RPC_PROCESS} may not message {call.process}: porch.toml "
                                  "grants it no capability for it"))
            elif isinstance(exc, Timeout):
                ex.respond(*_text(504, f"{call.process} did not answer in time"))
            elif isinstance(exc, Offline) and exc.target == KERNEL:
                ex.respond(*_text(503, LINK_LOST))
            elif isinstance(exc, Offline) and not exc.delivered:
                ex.respond(*_text(503, f"{call.process} is not running"))
            else:
                ex.respond(*_text(502, f"{call.process}: {exc}"))

        fut.add_done_callback(done)


# ---------------------------------------------------------------------- helpers


class BadAnswer(ValueError):
    """A process's answer that cannot become an HTTP response (the client gets 502)."""


def http_response(msg: Message) -> tuple[int, Headers, bytes]:
    """The process's Response as HTTP (docs/kinode.md §2.3), or BadAnswer: garbage, a status
    that is not a final HTTP status (Kinode: 500), or a header HTTP cannot carry (an
    invalid name, a value with a control byte, DEL or a character beyond Latin-1;
    DEVIATION: Kinode drops such a header, and its client may hang) all become 502.
    Repeated headers, several Set-Cookie included, are kept; default content type
    application/octet-stream."""
    reply = http_pb2.HttpResponse()
    try:
        reply.ParseFromString(msg.body)
    except Exception:
        raise BadAnswer("with something that is not an HttpResponse") from None
    status = reply.status
    body = msg.blob.bytes if msg.blob is not None else b""
    if not 200 <= status <= 999:
        raise BadAnswer(f"with invalid status {status}")
    headers: Headers = []
    typed = False
    for h in reply.headers:
        name, value = h.name, h.value
        if not _TOKEN.fullmatch(name):
            raise BadAnswer(f"with an invalid header name {name[:80]!r}")
        if not _FIELD_VALUE.fullmatch(value):
            raise BadAnswer(f"with a value of header {name} that HTTP cannot carry")
        lname = name.lower()
        if lname in ("content-length", "transfer-encoding", "connection"):
            continue  # the server frames the body itself
        if lname == "content-type":
            typed = True
        headers.append((name, value))
    if not typed and status not in (204, 304):
        headers.append(("Content-Type", "application/octet-stream"))
    return status, headers, body


NODE_PATHS = ("/our", "/our.js", "/amionline", "/favicon.ico")


def our_js(node: str) -> bytes:
    """Kinode's /our.js: `window.our = {}; window.our.node = '<node>';`, the name as a
    JSON string (escaped, whatever it holds; "<" too, so it can sit in a <script>)."""
    name = json.dumps(node).replace("<", "\\u003c")
    return f"window.our = {{}}; window.our.node = {name};".encode()


def _hostname(host: str) -> str:
    """Host header without the port (IPv6 literals keep their brackets)."""
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rsplit(":", 1)[0] if ":" in host else host


def _location(target: str) -> tuple[str, str]:
    """A Location header: every redirect porch makes goes through safe_redirect."""
    return "Location", safe_redirect(target) or "/"


def _host_app(apps: set[str], asked: str | None, redirect: str | None) -> str | None:
    """The app a login on a secure subdomain's host is for: the one asked for if it is
    one of the host's, else the one the redirect leads to, else the host's only app."""
    if asked:
        return asked if asked in apps else None
    first = redirect.split("/", 2)[1].split("?", 1)[0] if redirect else ""
    if first in apps:
        return first
    return next(iter(apps)) if len(apps) == 1 else None


def _query_value(query: str, name: str) -> str | None:
    values = parse_qs(query).get(name)
    return values[-1] if values else None


def _login_fields(body: bytes, form: bool) -> tuple[str, str | None, str | None]:
    """(password, secure-subdomain app id or None, redirect or None) from the login body."""
    if form:
        fields = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    else:
        try:
            fields = json.loads(body or b"null")
        except ValueError:
            raise ValueError("Failed to parse login info") from None
        if not isinstance(fields, dict):
            raise ValueError("Failed to parse login info")
    password = fields.get("password")
    if not isinstance(password, str) or not password:
        raise ValueError("a non-empty password is required")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a JSON escape such as \ud800
        raise ValueError("the password is not valid UTF-8") from None
    subdomain = fields.get("subdomain") or None
    if subdomain is not None and (not isinstance(subdomain, str) or not is_valid(subdomain)):
        raise ValueError("subdomain must be an app's process id")
    redirect = fields.get("redirect") or None
    if redirect is not None and not isinstance(redirect, str):
        raise ValueError("redirect must be a path")
    return password, subdomain, redirect

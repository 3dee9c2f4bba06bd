"""Outgoing HTTP requests with `requests`, run in worker threads.

Why not `requests.Session`: its cookie jar would carry one process's cookies into
another's requests (Kinode has no cookie store), and its redirect loop reads redirect
bodies without a size limit. So a shared `HTTPAdapter` (a thread-safe urllib3 pool of
keep-alive connections) sends each hop, and this module follows redirects itself,
checking each new host against the node's policy.

Unlike Kinode, the caller's deadline bounds the request (connect, send, headers and
body: see `watchdog`), the body is read in chunks up to `max_response_bytes` (a large
one into a memfd, within the service's in-flight budget: see `body`), and the
body is never decompressed (Kinode's reqwest is built without compression either, so
`Content-Encoding` describes the bytes the caller gets).
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urljoin, urlsplit
from urllib.request import getproxies_environment

import requests
import requests.exceptions as rex
import urllib3
import urllib3.exceptions as uex
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest
from requests.utils import get_environ_proxies, requote_uri
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import connection as u3connection

from porch.http_client.body import Body, BodyCollector, InflightBudget
from porch.http_client.headers import response_headers
from porch.http_client.policy import OutgoingPolicy
from porch.http_client.results import ClientFailure
from porch.http_client.validate import parse_absolute_url
from porch.http_client.watchdog import Deadline, Watchdog

log = logging.getLogger("porch.http_client")

CHUNK = 64 * 1024
# A redirect's own body is read (to keep its connection alive) only up to this much.
REDIRECT_BODY_LIMIT = 64 * 1024
# Connection pools kept (one per scheme/host/port); more hosts evict the least recent.
POOLS = 100
# Headers that must not follow a redirect to another origin (what reqwest removes).
SENSITIVE = ("Authorization", "Cookie", "Proxy-Authorization", "WWW-Authenticate")
REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_VERSION = "HTTP/1.1"

_current = threading.local()


def current_deadline() -> Deadline | None:
    """The Deadline of the request this worker thread is running, if any."""
    return cast("Deadline | None", getattr(_current, "deadline", None))


def current_version() -> str:
    """The HTTP version the request this worker thread is running asked for."""
    return cast(str, getattr(_current, "version", DEFAULT_VERSION))


@dataclass(slots=True)
class Outgoing:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    deadline: float  # time.monotonic()
    version: str = DEFAULT_VERSION  # "HTTP/1.0" or "HTTP/1.1" (see validate.SPOKEN_VERSIONS)


@dataclass(slots=True)
class Fetched:
    status: int
    headers: list[tuple[str, str]]
    body: Body  # bytes or a memfd, holding the in-flight budget until released


# ---------------------------------------------------------------- connections

class _LastResponse(http.client.HTTPResponse):
    """The response that ends its connection (http.client then closes the connection,
    and the pool opens a new one for the next request)."""

    def _check_close(self) -> bool:
        return True


class GuardedHTTPConnection(HTTPConnection):
    """An urllib3 connection that checks the policy against the address it connects to,
    connects to exactly that address, and hands its socket to the request's Deadline."""

    policy: OutgoingPolicy = OutgoingPolicy()
    _porch_deadline: Deadline | None = None

    def _new_conn(self) -> socket.socket:
        deadline = current_deadline()
        if self.policy.needs_addresses and self.proxy is None:
            sock = self._connect_checked(deadline)
        else:
            sock = super()._new_conn()
        if deadline is not None:
            self._adopt(deadline, sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = current_deadline()
        if deadline is not None and self.sock is not None:  # a kept-alive connection
            self._adopt(deadline, self.sock)
        # The request line speaks the version asked for; http.client still adds Host (as
        # reqwest does for HTTP/1.0 too), and bodies have a Content-Length, never chunks.
        # An HTTP/1.0 exchange is the connection's last: the server closes it after the
        # response whatever that says, so it must not go back to the pool (a request
        # sent on it would race the server's close and be reset).
        version = current_version()
        self._http_vsn_str = version
        self.response_class = _LastResponse if version == "HTTP/1.0" else http.client.HTTPResponse
        super().request(*args, **kwargs)

    def _adopt(self, deadline: Deadline, sock: socket.socket) -> None:
        previous = self._porch_deadline
        if previous is not None and previous is not deadline:
            previous.detach(sock)
        self._porch_deadline = deadline
        deadline.attach(sock)

    def _connect_checked(self, deadline: Deadline | None) -> socket.socket:
        host = self._dns_host
        try:
            infos = socket.getaddrinfo(host, self.port, 0, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise uex.NameResolutionError(self.host, self, exc) from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        reason = self.policy.check(self.host, addresses)
        if reason is not None:
            if deadline is not None:
                deadline.denied = reason
            raise uex.NewConnectionError(self, f"refused by the node's outgoing policy: {reason}")
        last: OSError | None = None
        for address in addresses:
            try:
                return u3connection.create_connection(
                    (address, self.port), self.timeout,
                    source_address=self.source_address, socket_options=self.socket_options)
            except TimeoutError as exc:
                raise uex.ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                ) from exc
            except OSError as exc:
                last = exc
        raise uex.NewConnectionError(self, f"Failed to establish a new connection: {last}")


class GuardedHTTPSConnection(GuardedHTTPConnection, HTTPSConnection):
    pass


class PorchAdapter(HTTPAdapter):
    """requests' adapter with the guarded connections in every pool (proxied ones too)."""

    def __init__(self, policy: OutgoingPolicy, pool_maxsize: int) -> None:
        http = type("HTTPConn", (GuardedHTTPConnection,), {"policy": policy})
        https = type("HTTPSConn", (GuardedHTTPSConnection,), {"policy": policy})
        self._pool_classes: dict[str, type[HTTPConnectionPool]] = {
            "http": type("HTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("HTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }
        super().__init__(pool_connections=POOLS, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._pool_classes
        return manager


# ---------------------------------------------------------------- requests

class Fetcher:
    """Runs one outgoing request to completion on the calling (worker) thread."""

    def __init__(self, policy: OutgoingPolicy, *, max_response_bytes: int, max_redirects: int,
                 pool_maxsize: int, env_proxies: bool, watchdog: Watchdog,
                 budget: InflightBudget | None = None) -> None:
        self.policy = policy
        self.max_response_bytes = max_response_bytes
        self.budget = budget or InflightBudget(1 << 62)
        self.max_redirects = max_redirects
        self.adapter = PorchAdapter(policy, pool_maxsize)
        self.watchdog = watchdog
        # Looking proxies up costs per request; skip it when the environment names none.
        self.env_proxies = env_proxies and bool(getproxies_environment())

    def close(self) -> None:
        self.adapter.close()

    def fetch(self, req: Outgoing) -> Fetched:
        """The response, or ClientFailure (ExecuteRequestFailed, BuildRequestFailed,
        Denied, Timeout, ResponseTooLarge)."""
        deadline = Deadline(req.deadline)
        if deadline.remaining() <= 0:
            raise ClientFailure("Timeout", url=req.url, message="deadline passed before the request started")
        self.watchdog.watch(deadline)
        _current.deadline = deadline
        _current.version = req.version
        try:
            return self._fetch(req, deadline)
        except ClientFailure:
            raise
        except Exception as exc:
            raise self._classify(exc, deadline, req.url) from exc
        finally:
            deadline.finish()
            _current.deadline = None
            _current.version = DEFAULT_VERSION

    def _fetch(self, req: Outgoing, deadline: Deadline) -> Fetched:
        prep = prepare(req)
        url = req.url
        hops = 0
        while True:
            proxies = get_environ_proxies(url) if self.env_proxies else None
            self._check_policy(url, proxied=proxies is not None and _proxy_for(url, proxies))
            remaining = deadline.remaining()
            if remaining <= 0:
                raise ClientFailure("Timeout", url=req.url, message="deadline passed")
            resp = self.adapter.send(prep, stream=True, timeout=cast(Any, urllib3.Timeout(total=remaining)),
                                     proxies=proxies)
            location = resp.headers.get("Location") if resp.status_code in REDIRECTS else None
            if location is None or self.max_redirects == 0:
                return self._read(resp, deadline, req.url)
            if hops == self.max_redirects:
                resp.close()
                raise ClientFailure("ExecuteRequestFailed",
                                    message=f"too many redirects (more than {self.max_redirects})")
            hops += 1
            _discard(resp)
            prep = self._redirected(prep, resp, location)
            url = cast(str, prep.url)

    def _check_policy(self, url: str, *, proxied: bool) -> None:
        if self.policy.allows_everything:
            return
        parsed = parse_absolute_url(url)
        host = parsed.host if parsed is not None else ""
        reason = self.policy.check(host, final=proxied)
        if reason is not None:
            raise ClientFailure("Denied", url=url, message=reason)

    def _redirected(self, prep: PreparedRequest, resp: requests.Response, location: str) -> PreparedRequest:
        """The next hop, as browsers and requests do it: method rewritten for 301/302/303,
        body dropped unless 307/308, credentials dropped when the origin changes."""
        old = cast(str, prep.url)
        if location.startswith("//"):
            location = f"{urlsplit(old).scheme}:{location}"
        new_url = requote_uri(urljoin(old, location))
        parsed = parse_absolute_url(new_url)
        if parsed is None or parsed.scheme not in ("http", "https"):
            raise ClientFailure("ExecuteRequestFailed", message=f"redirect to an unusable URL {location!r}")
        nxt = prep.copy()
        try:
            nxt.prepare_url(new_url, None)
        except (rex.RequestException, ValueError) as exc:
            raise ClientFailure("ExecuteRequestFailed", message=f"redirect to {location!r}: {exc}") from None
        status, method = resp.status_code, cast(str, prep.method)
        if (status in (302, 303) and method.upper() != "HEAD") or (status == 301 and method.upper() == "POST"):
            nxt.method = "GET"
        headers = nxt.headers
        if status not in (307, 308):
            nxt.body = None
            for name in ("Content-Length", "Content-Type", "Transfer-Encoding"):
                headers.pop(name, None)
        if _origin(old) != _origin(new_url):
            for name in (*SENSITIVE, "Host"):  # a caller's Host names the old origin
                headers.pop(name, None)
        return nxt

    def _read(self, resp: requests.Response, deadline: Deadline, url: str) -> Fetched:
        cap = self.max_response_bytes
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            resp.close()
            raise ClientFailure("ResponseTooLarge", url=url,
                                message=f"Content-Length {declared} is over the node's cap of {cap} bytes")
        raw = resp.raw
        body = BodyCollector(self.budget)
        try:
            for chunk in raw.stream(CHUNK, decode_content=False):
                if body.size + len(chunk) > cap:
                    raise ClientFailure("ResponseTooLarge", url=url,
                                        message=f"body is over the node's cap of {cap} bytes")
                if not body.add(chunk):
                    raise ClientFailure(
                        "ExecuteRequestFailed", url=url,
                        message=f"http-client busy: {self.budget.used} bytes of response bodies "
                        f"in flight, the node's max_inflight_bytes is {self.budget.limit}")
                if deadline.expired:
                    break
            if deadline.expired:  # the watchdog cut the body short: never return it as whole
                raise ClientFailure("Timeout", url=url, message=f"{deadline.why} while reading the body")
        except BaseException:
            resp.close()
            body.discard()
            raise
        headers = response_headers(raw.headers.items())
        return Fetched(resp.status_code, headers, body.finish())

    def _classify(self, exc: Exception, deadline: Deadline, url: str) -> ClientFailure:
        if deadline.denied is not None:
            return ClientFailure("Denied", url=url, message=deadline.denied)
        if deadline.expired or isinstance(exc, rex.Timeout | uex.TimeoutError | TimeoutError):
            why = deadline.why or "deadline passed"
            return ClientFailure("Timeout", url=url, message=f"{why}: {_describe(exc)}")
        if isinstance(exc, rex.InvalidURL | rex.MissingSchema | rex.InvalidSchema | rex.InvalidHeader
                      | uex.LocationValueError):
            return ClientFailure("BuildRequestFailed", message=_describe(exc))
        if not isinstance(exc, rex.RequestException | uex.HTTPError | OSError):
            log.exception("unexpected failure fetching %s", url)
        return ClientFailure("ExecuteRequestFailed", message=_describe(exc))


def prepare(req: Outgoing) -> PreparedRequest:
    """A PreparedRequest with the caller's headers in order, repeats kept.

    Built step by step (no cookies, no hooks: neither is used). requests collapses
    headers into a dict; urllib3 sends every line of an HTTPHeaderDict, so the headers
    are swapped for one after preparation.
    """
    prep = PreparedRequest()
    try:
        prep.prepare_method(req.method)
        prep.prepare_url(req.url, None)
        prep.prepare_headers(None)
        prep.prepare_body(req.body or None, None, None)
        if "@" in req.url:  # user:password@host becomes Basic auth, as reqwest does
            prep.prepare_auth(None, req.url)
    except (rex.RequestException, ValueError, UnicodeError) as exc:
        raise ClientFailure("BuildRequestFailed", message=_describe(exc)) from None
    # HTTP methods are case-sensitive; requests upper-cases them, Kinode sends them as given.
    prep.method = req.method
    mine = {name.lower() for name, _ in req.headers}
    headers = urllib3.HTTPHeaderDict()
    for name, value in prep.headers.items():  # Content-Length; Authorization from user:pass@
        if name.lower() not in mine:
            headers.add(name, value)
    if "accept" not in mine:
        headers.add("Accept", "*/*")  # reqwest's default
    for name, value in req.headers:
        headers.add(name, value)
    prep.headers = headers  # type: ignore[assignment]
    return prep


def _proxy_for(url: str, proxies: dict[str, str]) -> bool:
    scheme = urlsplit(url).scheme
    return bool(proxies.get(scheme) or proxies.get("all"))


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = parse_absolute_url(url)
    if parsed is None:
        return ("", url, None)
    return (parsed.scheme, parsed.host, parsed.port)


def _discard(resp: requests.Response) -> None:
    """Read a small redirect body so the connection can be reused; close a big one."""
    try:
        resp.raw.read(REDIRECT_BODY_LIMIT, decode_content=False)
    except Exception:
        pass
    resp.close()


def _describe(exc: BaseException) -> str:
    """The most specific message: urllib3's reason rather than requests' wrappers
    ("Max retries exceeded ... Caused by ...")."""
    inner: BaseException = exc
    for _ in range(5):  # a few levels of wrapping at most; never loop on a cycle
        reason = getattr(inner, "reason", None)
        if isinstance(reason, BaseException):
            inner = reason
        elif inner.args and isinstance(inner.args[0], uex.MaxRetryError):
            inner = inner.args[0]
        else:
            break
    return str(inner) or type(inner).__name__


def monotonic_deadline(deadline_ms: int, default_timeout_s: float, now_ms: int) -> float:
    """The caller's absolute (Unix ms) deadline on this process's monotonic clock."""
    if deadline_ms:
        return time.monotonic() + (deadline_ms - now_ms) / 1000.0
    return time.monotonic() + default_timeout_s

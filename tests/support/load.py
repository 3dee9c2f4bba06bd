"""Steady HTTP load from other threads while a test breaks something: every outcome
counted (statuses, and every error: refused, reset or timed out), so that a test can
assert that nothing was refused, nothing hung, and which statuses were seen."""

from __future__ import annotations

import threading
import time

import requests


class Load:
    def __init__(self, port: int, path: str = "/web:web:sys/dyn", threads: int = 2) -> None:
        self.url = f"http://127.0.0.1:{port}{path}"
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    @property
    def refused(self) -> int:
        return sum("refused" in e.lower() for e in self.errors)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                status = session.get(self.url, timeout=10).status_code
                with self._lock:
                    self.statuses[status] = self.statuses.get(status, 0) + 1
            except requests.RequestException as exc:  # refused, reset or timed out
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                session = requests.Session()
            time.sleep(0.005)


class KeepAliveLoad:
    """HTTP/1.1 clients that keep their connection alive as long as the server lets
    them, as wrk does, with no retries: every outcome is counted by kind.

    - `statuses`: "200", or "503 <first line of the body>" (the reason a server gave);
    - `errors`: exception type name -> count (RemoteDisconnected: closed without an
      answer; ConnectionResetError; ConnectionRefusedError; TimeoutError: hung);
    - `closed_by_server`: answers that carried `Connection: close`;
    - `max_latency_s`, `requests`.
    """

    def __init__(self, port: int, paths: list[str], threads: int = 4, timeout: float = 10.0,
                 pause_s: float = 0.0) -> None:
        self.port = port
        self.paths = paths
        self.timeout = timeout
        self.pause_s = pause_s
        self.statuses: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.closed_by_server = 0
        self.max_latency_s = 0.0
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def __enter__(self) -> KeepAliveLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        with self._lock:
            return dict(self.statuses), dict(self.errors)

    def _run(self, n: int) -> None:
        import http.client

        conn: http.client.HTTPConnection | None = None
        i = n
        while not self._stop.is_set():
            path = self.paths[i % len(self.paths)]
            i += 1
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            started = time.monotonic()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                kind = "TimeoutError" if isinstance(exc, TimeoutError) else type(exc).__name__
                with self._lock:
                    self.requests += 1
                    self.errors[kind] = self.errors.get(kind, 0) + 1
                conn.close()
                conn = None
                time.sleep(0.01)  # a refused port would otherwise be counted in a tight loop
                continue
            took = time.monotonic() - started
            key = str(resp.status)
            if resp.status != 200:
                first = (body.decode("utf-8", "replace").strip().splitlines() or [""])[0]
                key += " " + first[:100] if first else ""
            with self._lock:
                self.requests += 1
                self.statuses[key] = self.statuses.get(key, 0) + 1
                self.max_latency_s = max(self.max_latency_s, took)
                if resp.will_close:
                    self.closed_by_server += 1
            if resp.will_close:
                conn.close()
                conn = None
            if self.pause_s:
                time.sleep(self.pause_s)
        if conn is not None:
            conn.close()

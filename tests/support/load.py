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

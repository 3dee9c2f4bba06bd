"""What the http-server keeps on disk in <home>/state: port, bindings, static content,
password hash and JWT secret. Writes are atomic (temp file + rename); secrets are 0600.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import argon2

from porch.files import write_atomic
from porch.http_server.bindings import BindingTable, http_entry, ws_entry

log = logging.getLogger("porch.http_server")


class BindingStore:
    """bindings.json (a snapshot) plus bindings.journal (the changes since, one JSON line
    each) plus content-addressed static files in static/.

    An action changes one path, so `record` appends that path's entry to the journal
    (fsync'd before the action is acknowledged): O(1) per bind, where rewriting the
    snapshot each time made binding N paths O(N^2) on the worker's loop (1000 static
    files: 5.1 s, requests slowed meanwhile). The journal is folded into a new snapshot
    when it holds as many records as the table has entries (at least COMPACT_MIN), and
    at every start. A torn last line (a crash mid-append) is ignored.

    Reads and writes hold an flock on bindings.lock: a worker stopping after its keeper
    died may still be folding the journal while the next worker loads it.
    """

    COMPACT_MIN = 256

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "bindings.json"
        self.journal = state_dir / "bindings.journal"
        self.static_dir = state_dir / "static"
        self.static_dir.mkdir(mode=0o700, exist_ok=True)
        self._written: set[str] = set()  # content files known to be on disk
        self._records = 0  # lines in the journal
        self._lock_path = state_dir / "bindings.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def save(self, table: BindingTable) -> None:
        """Write a whole snapshot and start an empty journal."""
        with self._locked():
            self._save(table)

    def _save(self, table: BindingTable) -> None:
        data, blobs = table.to_data()
        for digest, body in blobs.items():
            self._write_blob(digest, body)
        write_atomic(self.path, json.dumps(data, separators=(",", ":")).encode())
        self.journal.unlink(missing_ok=True)
        self._records = 0

    def record(self, table: BindingTable, kind: str, path: str) -> None:
        """Persist the entry now at `path` ("http" or "ws" binding) after an action."""
        if kind == "ws":
            ws = table.ws.get(path)
            if ws is None:
                log.error("no WebSocket binding at %r to record", path)
                return
            line: dict[str, Any] = {"ws": ws_entry(ws)}
        else:
            http = table.http.get(path)
            if http is None:
                log.error("no binding at %r to record", path)
                return
            entry, blob = http_entry(http)
            if blob is not None:
                self._write_blob(*blob)
            line = {"http": entry}
        with self._locked():
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, json.dumps(line, separators=(",", ":")).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._records += 1
            if self._records >= max(self.COMPACT_MIN, len(table.http) + len(table.ws)):
                self._save(table)

    def _write_blob(self, digest: str, body: bytes) -> None:
        if digest in self._written:
            return
        blob_path = self.static_dir / digest
        if not blob_path.exists():
            write_atomic(blob_path, body)
        self._written.add(digest)

    def load(self) -> BindingTable:
        """The snapshot with the journal replayed on it; then a fresh snapshot."""
        with self._locked():
            return self._load()

    def _load(self) -> BindingTable:
        data: dict[str, Any] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_bytes())
            except (OSError, ValueError) as exc:
                log.error("cannot read %s (%s): starting with no bindings", self.path, exc)
                data = {}
        changes = self._read_journal()
        entries = data.get("http", []) + [e for kind, e in changes if kind == "http"]
        wanted = {e["static"]["sha256"] for e in entries if e.get("static")}
        blobs = {}
        for digest in wanted:
            try:
                blobs[digest] = (self.static_dir / digest).read_bytes()
            except OSError:
                log.error("static content %s is missing; its binding is dropped", digest)
        table = BindingTable.from_data(data, blobs)
        for kind, e in changes:
            table.apply_entry(kind, e, blobs)
        if changes:
            self._save(table)
        live = {b.static.sha256 for _, b in table.http.items() if b.static is not None}
        for stale in self.static_dir.iterdir():
            if stale.name not in live and not stale.name.startswith("."):
                stale.unlink(missing_ok=True)
        self._written = set(live)
        return table

    def _read_journal(self) -> list[tuple[str, dict[str, Any]]]:
        try:
            lines = self.journal.read_bytes().split(b"\n")
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.error("cannot read %s (%s): the changes since the last snapshot are lost",
                      self.journal, exc)
            return []
        changes = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                (kind, entry), = record.items()
                if kind not in ("http", "ws"):
                    raise ValueError(kind)
            except ValueError:
                log.error("%s line %d is not a binding record (a crash mid-write?): ignored",
                          self.journal, n)
                continue
            changes.append((kind, entry))
        return changes


class NodeSecrets:
    """The node password's argon2id hash and the JWT signing secret."""

    def __init__(self, state_dir: Path) -> None:
        self.password_path = state_dir / "password.argon2"
        self.jwt_path = state_dir / "jwt.secret"

    def has_password(self) -> bool:
        return self.password_path.exists()

    def set_password(self, password: str) -> None:
        if not password:
            raise ValueError("the node password must not be empty")
        write_atomic(self.password_path, argon2.PasswordHasher().hash(password).encode())

    def password_hash(self) -> str:
        return self.password_path.read_text().strip()

    def jwt_secret(self) -> bytes:
        """Created once; changing it logs everyone out."""
        if not self.jwt_path.exists():
            write_atomic(self.jwt_path, secrets.token_bytes(32))
        return self.jwt_path.read_bytes()


def generate_password() -> str:
    return secrets.token_urlsafe(12)

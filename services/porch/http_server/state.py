"""What the http-server keeps on disk in <home>/state: the bindings and static content
(in the state database, db.py), the password hash and the JWT secret (files written
atomically, 0600). docs/state.md describes it all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sqlite3
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import argon2

from porch.files import temp_beside, write_atomic
from porch.http_server import legacy
from porch.http_server.bindings import RPC_PROCESS, BindingTable, HttpBinding, WsBinding
from porch.http_server.db import StateDb, describe, transaction
from porch.http_server.writable import StateHealth

log = logging.getLogger("porch.http_server")


class StateNotSaved(Exception):
    """A binding change that could not be committed (a full or read-only disk, an I/O
    error): it must not be applied either."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class BindingStore:
    """The bindings and their static content, in the state database (db.py, schema 2).

    `save` commits one binding (and its static body, addressed by SHA-256) before the
    action is acknowledged, or raises StateNotSaved; the caller changes the table
    served only after it returned. O(1) per bind: one transaction, its rows and the
    body, fsync'd by SQLite's commit. A body no binding names any more is deleted in
    the transaction that stopped naming it (and at start, `maintain`).

    The state of an older porch (bindings.json, bindings.journal, static/) is imported
    in one transaction at the first start that can write, then its files are removed.
    Until then (a disk that cannot be written) it is read from those files as it is.
    """

    def __init__(self, db: StateDb, state_dir: Path, health: StateHealth | None = None) -> None:
        self.db = db
        self.state_dir = state_dir
        self.health = health if health is not None else StateHealth(state_dir)

    # -- reading ------------------------------------------------------------------

    def load(self) -> BindingTable:
        """What is saved. Never fails for want of a writable disk: it reads what it can."""
        if not self._imported(self.db.reader()):
            try:
                self._import()
            except (OSError, sqlite3.Error) as exc:
                self.health.failed("importing the old binding files", describe(exc))
                return legacy.read(self.state_dir) or BindingTable()
        elif legacy.present(self.state_dir) and self.db.read_only is None:
            legacy.remove(self.state_dir)  # imported before, not removed then
        try:
            return self._read(self.db.reader())
        except sqlite3.Error as exc:
            log.error("cannot read the bindings from %s (%s): serving none", self.db.path, describe(exc))
            return BindingTable()

    def read(self) -> BindingTable:
        """The bindings as saved now (a member worker following the primary's commits);
        what it has if the database cannot be read."""
        try:
            return self._read(self.db.reader())
        except sqlite3.Error as exc:
            log.error("cannot read the bindings from %s (%s)", self.db.path, describe(exc))
            raise

    @staticmethod
    def _imported(conn: sqlite3.Connection) -> bool:
        try:
            row = conn.execute("SELECT 1 FROM meta WHERE key = 'legacy_imported'").fetchone()
        except sqlite3.Error:
            return False
        return row is not None

    @staticmethod
    def _read(conn: sqlite3.Connection) -> BindingTable:
        table = BindingTable()
        blobs: dict[str, bytes] = dict(conn.execute(
            "SELECT sha256, body FROM static_content WHERE sha256 IN"
            " (SELECT static_sha256 FROM http_bindings WHERE static_sha256 IS NOT NULL)"))
        for path, app, authenticated, local_only, sub, timeout_ms, sha, mime, direct in conn.execute(
                "SELECT path, app, authenticated, local_only, secure_subdomain, timeout_ms,"
                " static_sha256, static_mime, direct FROM http_bindings ORDER BY rowid"):
            entry: dict[str, Any] = {"path": path, "app": app, "authenticated": bool(authenticated),
                                     "local_only": bool(local_only), "secure_subdomain": sub,
                                     "timeout_ms": timeout_ms, "direct": bool(direct)}
            if sha is not None:
                if sha not in blobs:
                    log.error("static content %s of %s is missing; its binding is dropped", sha, path)
                entry["static"] = {"sha256": sha, "mime": mime}
            table.apply_entry("http", entry, blobs)
        for path, app, authenticated, sub, extension, direct in conn.execute(
                "SELECT path, app, authenticated, secure_subdomain, extension, direct FROM ws_bindings"
                " ORDER BY rowid"):
            table.apply_entry("ws", {"path": path, "app": app, "authenticated": bool(authenticated),
                                     "secure_subdomain": sub, "extension": bool(extension),
                                     "direct": bool(direct)}, blobs)
        return table

    # -- writing ------------------------------------------------------------------

    def save(self, binding: HttpBinding | WsBinding) -> None:
        """Commit one binding (replacing its path's); raises StateNotSaved if it is not
        durable. The table served is the caller's to change, after this returned."""
        kind = "WebSocket binding" if isinstance(binding, WsBinding) else "binding"
        what = f"saving the {kind} {binding.path or '/'}"
        try:
            conn = self._writer()
            with transaction(conn):
                if isinstance(binding, WsBinding):
                    _put_ws(conn, binding)
                else:
                    _put_http(conn, binding)
        except (OSError, sqlite3.Error) as exc:
            reason = describe(exc)
            self.health.failed(what, reason)
            raise StateNotSaved(reason) from exc
        self.health.succeeded()

    def maintain(self) -> None:
        """At start: prove that the state can be written (a page written to a file
        and fsync'd, and a commit), and delete static bodies no binding names. A
        failure is reported to `health` (the server then runs read-only)."""
        if self.db.read_only is not None:
            self.health.failed("opening the state database", self.db.read_only)
            return
        try:
            with temp_beside(self.state_dir / "write-probe") as (fd, _):
                os.write(fd, bytes(PROBE_BYTES))
                os.fsync(fd)
            with transaction(self.db.writer()) as conn:
                gone = conn.execute(
                    "DELETE FROM static_content WHERE NOT EXISTS (SELECT 1 FROM http_bindings"
                    " WHERE static_sha256 = static_content.sha256)").rowcount
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_start', ?)",
                             (int(time.time()),))
        except (OSError, sqlite3.Error) as exc:
            self.health.failed("writing to the state directory at start", describe(exc))
            return
        if gone:
            log.info("removed %d static bod%s no binding names", gone, "y" if gone == 1 else "ies")
        self.health.succeeded()

    def _writer(self) -> sqlite3.Connection:
        """The connection to write with; the old files imported first if they were not
        (the disk could not be written at start)."""
        conn = self.db.writer()
        if not self._imported(conn):
            self._import()
        return conn

    def _import(self) -> None:
        """The old files' bindings into the database, in one transaction with the mark
        that they are in (also when there were none); then the old files are removed."""
        old = legacy.present(self.state_dir)
        with legacy.locked(self.state_dir) if old else nullcontext():
            conn = self.db.writer()
            table = legacy.read(self.state_dir) if old else None
            with transaction(conn):
                if self._imported(conn):
                    return  # another worker did meanwhile
                if table is not None:
                    for _, http in table.http.items():
                        if http.app != RPC_PROCESS:
                            _put_http(conn, http)
                    for _, ws in table.ws.items():
                        _put_ws(conn, ws)
                conn.execute("INSERT INTO meta (key, value) VALUES ('legacy_imported', ?)",
                             (int(time.time()),))
            if table is not None:
                log.info("imported %d binding(s) from %s and %s into %s", len(table.http) - 1 + len(table.ws),
                         legacy.SNAPSHOT, legacy.JOURNAL, self.db.path)
            if old:
                legacy.remove(self.state_dir)


PROBE_BYTES = 4096  # one page: on a full disk even that cannot be allocated


def _put_http(conn: sqlite3.Connection, b: HttpBinding) -> None:
    """Upsert one HTTP binding; its static body stored if new, the old one deleted if
    no binding names it any more."""
    old = conn.execute("SELECT static_sha256 FROM http_bindings WHERE path = ?", (b.path,)).fetchone()
    digest = mime = None
    if b.static is not None:
        digest = b.static.sha256 or hashlib.sha256(b.static.body).hexdigest()
        mime = b.static.mime
        conn.execute("INSERT INTO static_content (sha256, body) VALUES (?, ?) ON CONFLICT DO NOTHING",
                     (digest, b.static.body))
    conn.execute(
        "INSERT INTO http_bindings (path, app, authenticated, local_only, secure_subdomain,"
        " timeout_ms, static_sha256, static_mime, direct) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (path) DO UPDATE SET app = excluded.app, authenticated = excluded.authenticated,"
        " local_only = excluded.local_only, secure_subdomain = excluded.secure_subdomain,"
        " timeout_ms = excluded.timeout_ms, static_sha256 = excluded.static_sha256,"
        " static_mime = excluded.static_mime, direct = excluded.direct",
        (b.path, b.app, b.authenticated, b.local_only, b.secure_subdomain, b.timeout_ms, digest, mime,
         b.direct))
    if old is not None and old[0] is not None and old[0] != digest:
        conn.execute("DELETE FROM static_content WHERE sha256 = ? AND NOT EXISTS"
                     " (SELECT 1 FROM http_bindings WHERE static_sha256 = ?)", (old[0], old[0]))


def _put_ws(conn: sqlite3.Connection, b: WsBinding) -> None:
    conn.execute(
        "INSERT INTO ws_bindings (path, app, authenticated, secure_subdomain, extension, direct)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET app = excluded.app,"
        " authenticated = excluded.authenticated, secure_subdomain = excluded.secure_subdomain,"
        " extension = excluded.extension, direct = excluded.direct",
        (b.path, b.app, b.authenticated, b.secure_subdomain, b.extension, b.direct))


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

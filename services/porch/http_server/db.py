"""The http-server's SQLite database, <home>/state/http-server.db: opening and schema.

One file for the server's durable state (login sessions, bindings, static content),
because SQLite gives what a hand-written store must re-invent: atomic, durable commits,
one writer at a time across processes (the worker, `porch password`), a clear error on
a full or read-only disk, no temporary files left behind. docs/state.md describes it.

- WAL: readers never wait for the writer; synchronous=FULL so that a commit (a logout)
  survives a power cut, not only a crash.
- busy_timeout: another process holding the write lock is waited for, not an error.
- The file (and SQLite's -wal and -shm, which copy its mode) is 0600.
- Schema versions: `MIGRATIONS[i]` takes the schema from version i to i + 1 (PRAGMA
  user_version). Append, never edit one that shipped; each runs in one transaction.
- A disk that cannot be written (full, read-only, a file that cannot be opened for
  writing) must not stop the server: `StateDb` then reads what it can and tries to
  write again when asked to.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DB_NAME = "http-server.db"
BUSY_TIMEOUT_MS = 5000
WAL_LIMIT_BYTES = 4 * 1024 * 1024

MIGRATIONS: list[tuple[str, ...]] = [
    # 1: login sessions (porch.http_server.sessions). A row is a live session until it
    # expires or is deleted (logout, `porch password`).
    (
        "CREATE TABLE sessions (sid TEXT PRIMARY KEY, app TEXT, created INTEGER NOT NULL,"
        " expires INTEGER NOT NULL) WITHOUT ROWID",
        "CREATE INDEX sessions_expires ON sessions (expires)",
    ),
    # 2: the bindings and their static content (porch.http_server.state.BindingStore),
    # before in bindings.json, bindings.journal and static/ (imported once, then
    # removed). Rows keep the order paths were first bound in (rowid; an upsert keeps
    # it). app NULL: an unbound path (a tombstone, answers 404). static_content is
    # addressed by the SHA-256 of its body; a body no binding names is deleted with
    # the change that stopped naming it.
    (
        "CREATE TABLE static_content (sha256 TEXT NOT NULL UNIQUE, body BLOB NOT NULL)",
        "CREATE TABLE http_bindings (path TEXT NOT NULL UNIQUE, app TEXT,"
        " authenticated INTEGER NOT NULL, local_only INTEGER NOT NULL, secure_subdomain TEXT,"
        " timeout_ms INTEGER NOT NULL, static_sha256 TEXT, static_mime TEXT)",
        "CREATE INDEX http_bindings_static ON http_bindings (static_sha256)"
        " WHERE static_sha256 IS NOT NULL",
        "CREATE TABLE ws_bindings (path TEXT NOT NULL UNIQUE, app TEXT,"
        " authenticated INTEGER NOT NULL, secure_subdomain TEXT, extension INTEGER NOT NULL)",
        # Facts about the state itself, e.g. 'legacy_imported' (the old files are in).
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    ),
    # 3: bindings served without the kernel in between: WebSocket bindings whose sockets
    # the app holds itself (WsBinding.direct, docs/websockets.md), HTTP bindings whose
    # requests go on a direct link (HttpBinding.direct, docs/direct.md).
    (
        "ALTER TABLE ws_bindings ADD COLUMN direct INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE http_bindings ADD COLUMN direct INTEGER NOT NULL DEFAULT 0",
    ),
]


class SchemaTooNew(sqlite3.DatabaseError):
    """The file was written by a newer porch; this one must not touch it."""


def db_path(state_dir: Path) -> Path:
    return state_dir / DB_NAME


def open_db(path: Path, migrations: list[tuple[str, ...]] | None = None) -> sqlite3.Connection:
    """The database at `path`, created 0600 if missing, its schema brought up to date.

    The connection is in autocommit mode: callers group writes with `transaction`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        # After a large commit (a big static body) the WAL shrinks back to this.
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
        migrate(conn, MIGRATIONS if migrations is None else migrations)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection, migrations: list[tuple[str, ...]]) -> int:
    """Apply the migrations the file lacks; the schema version after."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(migrations):
        raise SchemaTooNew(f"schema version {version} is newer than this porch knows "
                           f"({len(migrations)})")
    while version < len(migrations):
        conn.execute("BEGIN IMMEDIATE")  # the write lock: two processes never both migrate
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version < len(migrations):
                for statement in migrations[version]:
                    conn.execute(statement)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return version


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT: all of it durable once this returns, or none of it
    (the error is raised: a full disk fails the COMMIT, SQLITE_FULL)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (a full disk)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise


def describe(exc: BaseException) -> str:
    """An error as one line for people: SQLite's name for it (SQLITE_FULL,
    SQLITE_READONLY, ...) or the OS's errno text."""
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else str(exc) or type(exc).__name__


def open_read_only(path: Path) -> sqlite3.Connection:
    """The database at `path` for reading only, on a disk that may be read-only.

    SQLite opens a WAL database read-only while its -wal and -shm files exist (a
    worker killed, or stopped after the disk turned read-only); after a clean close
    they are gone and it can only be opened as immutable (nothing else can change it:
    the disk is read-only). Raises sqlite3.Error if neither works."""
    uri = "file:" + str(path).replace("?", "%3f").replace("#", "%23")
    tries = [uri + "?mode=ro"]
    if not path.with_name(path.name + "-wal").exists():
        tries.append(uri + "?mode=ro&immutable=1")  # with a WAL it would read stale pages
    error: sqlite3.Error | None = None
    for target in tries:
        try:
            conn = sqlite3.connect(target, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None)
        except sqlite3.Error as exc:
            error = exc
            continue
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            conn.close()
            error = exc
            continue
        return conn
    assert error is not None
    raise error


def _snapshot(path: Path, migrations: list[tuple[str, ...]]) -> sqlite3.Connection:
    """What can be read of `path`, as an in-memory database at the current schema and
    read-only (query_only): the file when it is at the current schema already is used
    as it is by the caller; this is for one older, missing or unreadable. Rows of
    tables the file has are copied, with the columns the file has (a column a later
    schema added takes its default); the rest is empty."""
    mem = sqlite3.connect(":memory:", isolation_level=None)
    migrate(mem, migrations)
    try:
        old = open_read_only(path)
    except sqlite3.Error:
        old = None
    if old is not None:
        try:
            present = {row[0] for row in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for (table,) in mem.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                if table not in present:
                    continue
                theirs = {row[1] for row in old.execute(f"PRAGMA table_info({table})")}
                columns = [row[1] for row in mem.execute(f"PRAGMA table_info({table})") if row[1] in theirs]
                listed = ", ".join(columns)
                rows = old.execute(f"SELECT {listed} FROM {table}").fetchall()
                marks = ", ".join("?" * len(columns))
                mem.executemany(f"INSERT INTO {table} ({listed}) VALUES ({marks})", rows)
        except sqlite3.Error:
            pass  # what was copied is what could be read
        finally:
            old.close()
    mem.execute("PRAGMA query_only = ON")
    return mem


class StateDb:
    """A long-lived process's connection to the database (the http-server's worker).

    `open` never fails for want of a writable disk: it falls back to reading (the file
    read-only, or an in-memory copy of what could be read), with `read_only` saying
    why. Writes go through `writer()`, which first tries to open the file read-write
    again, so that a disk that has been fixed is used without a restart. Readers use
    `reader()` and, to notice a new connection, `generation`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, read_only: str | None = None,
                 migrations: list[tuple[str, ...]] | None = None) -> None:
        self.path = path
        self._conn = conn
        self.read_only = read_only
        self.generation = 0
        self._migrations = MIGRATIONS if migrations is None else migrations

    @classmethod
    def open(cls, path: Path, migrations: list[tuple[str, ...]] | None = None) -> StateDb:
        steps = MIGRATIONS if migrations is None else migrations
        try:
            return cls(path, open_db(path, steps), None, steps)
        except (OSError, sqlite3.Error) as exc:
            reason = f"cannot open {path} for writing: {describe(exc)}"
        return cls(path, cls._for_reading(path, steps), reason, steps)

    @staticmethod
    def _for_reading(path: Path, migrations: list[tuple[str, ...]]) -> sqlite3.Connection:
        try:
            conn = open_read_only(path)
        except sqlite3.Error:
            return _snapshot(path, migrations)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error:
            version = -1
        if version == len(migrations):
            return conn
        conn.close()
        return _snapshot(path, migrations)

    def reader(self) -> sqlite3.Connection:
        return self._conn

    def writer(self) -> sqlite3.Connection:
        """The connection to write with; raises OSError or sqlite3.Error if the file
        still cannot be opened for writing."""
        if self.read_only is not None:
            # Closed first: SQLite shares a file's -shm mapping among the connections
            # of a process, and the reading one's is read-only.
            self._conn.close()
            self.generation += 1
            try:
                self._conn = open_db(self.path, self._migrations)
            except BaseException:
                self._conn = self._for_reading(self.path, self._migrations)
                raise
            self.read_only = None
        return self._conn

    def close(self) -> None:
        self._conn.close()

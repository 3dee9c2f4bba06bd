"""The http-server's SQLite database, <home>/state/http-server.db: opening and schema.

One file for the server's durable state (sessions today; the bindings are meant to
move here too), because SQLite gives what a hand-written store must re-invent: atomic,
durable commits, one writer at a time across processes (the worker, `porch password`),
a clear error on a full or read-only disk, no temporary files left behind.

- WAL: readers never wait for the writer; synchronous=FULL so that a commit (a logout)
  survives a power cut, not only a crash.
- busy_timeout: another process holding the write lock is waited for, not an error.
- The file (and SQLite's -wal and -shm, which copy its mode) is 0600.
- Schema versions: `MIGRATIONS[i]` takes the schema from version i to i + 1 (PRAGMA
  user_version). Append, never edit one that shipped; each runs in one transaction.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

DB_NAME = "http-server.db"
BUSY_TIMEOUT_MS = 5000

MIGRATIONS: list[tuple[str, ...]] = [
    # 1: login sessions (porch.http_server.sessions). A row is a live session until it
    # expires or is deleted (logout, `porch password`).
    (
        "CREATE TABLE sessions (sid TEXT PRIMARY KEY, app TEXT, created INTEGER NOT NULL,"
        " expires INTEGER NOT NULL) WITHOUT ROWID",
        "CREATE INDEX sessions_expires ON sessions (expires)",
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

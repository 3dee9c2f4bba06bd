"""Login sessions, kept server-side so that logging out ends them (issue 9 item 5).

A login creates a session (a random id, the app it is for, its expiry) and the cookie's
JWT names it (`sid`). A token is honoured only while its session is live, so logout
(`revoke`) and `porch password` (`revoke_all`) end sessions at once, across restarts,
whatever the token's own expiry says.

`is_live` is on the path of every authenticated request: answers are cached in memory,
and the cache is dropped when another connection (another process: `porch password`,
a second worker during a restart) has committed to the database since, which SQLite's
`PRAGMA data_version` tells without reading any table.

Writes go through `StateDb.writer()`: on a disk that cannot be written they fail (a
login is refused, 503) and are tried again at the next login.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import time
from pathlib import Path

from porch.http_server.db import StateDb, db_path, open_db, transaction

log = logging.getLogger("porch.http_server")
_MAX_CACHED = 10_000


class Sessions:
    def __init__(self, db: StateDb | sqlite3.Connection) -> None:
        self._state = db if isinstance(db, StateDb) else StateDb(Path(), db)
        self._cache: dict[str, int] = {}  # sid -> expiry (0: no such session)
        self._version = self._data_version()

    def close(self) -> None:
        self._state.close()

    def create(self, app: str | None, expires: int, now: float | None = None) -> str:
        """A new live session; its id. Raises sqlite3.Error if it cannot be stored (a
        login that is not recorded must not succeed: it could not be revoked)."""
        now = time.time() if now is None else now
        sid = secrets.token_urlsafe(18)
        try:
            with transaction(self._state.writer()) as db:
                db.execute("DELETE FROM sessions WHERE expires <= ?", (int(now),))
                db.execute("INSERT INTO sessions (sid, app, created, expires) VALUES (?, ?, ?, ?)",
                           (sid, app, int(now), expires))
        except OSError as exc:  # the file could not be opened for writing
            raise sqlite3.OperationalError(str(exc)) from exc
        self._remember(sid, expires)
        return sid

    def is_live(self, sid: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        try:
            version = self._data_version()
            if version != self._version:
                self._cache.clear()
                self._version = version
            expires = self._cache.get(sid)
            if expires is None:
                row = self._state.reader().execute("SELECT expires FROM sessions WHERE sid = ?",
                                                   (sid,)).fetchone()
                expires = int(row[0]) if row is not None else 0
                self._remember(sid, expires)
        except sqlite3.Error as exc:  # fail closed: an unreadable store opens nothing
            log.error("cannot read the sessions: %s", exc)
            return False
        return expires > now

    def revoke(self, sid: str) -> None:
        self._writer().execute("DELETE FROM sessions WHERE sid = ?", (sid,))
        self._remember(sid, 0)

    def revoke_all(self) -> int:
        """End every session (the password changed); how many were live."""
        count = self._writer().execute("DELETE FROM sessions").rowcount
        self._cache.clear()
        return int(count)

    def live_count(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        return int(self._state.reader().execute("SELECT count(*) FROM sessions WHERE expires > ?",
                                                (int(now),)).fetchone()[0])

    def _writer(self) -> sqlite3.Connection:
        try:
            return self._state.writer()
        except OSError as exc:  # callers handle sqlite3.Error: one kind of failure
            raise sqlite3.OperationalError(str(exc)) from exc

    def _remember(self, sid: str, expires: int) -> None:
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[sid] = expires

    def _data_version(self) -> tuple[int, int]:
        """Changes when another connection commits, or when the connection is new."""
        version = int(self._state.reader().execute("PRAGMA data_version").fetchone()[0])
        return self._state.generation, version


def open_sessions(state_dir: Path) -> Sessions:
    """The node's sessions, in <state>/http-server.db (for a short-lived command: it
    raises if the file cannot be opened for writing)."""
    return Sessions(open_db(db_path(state_dir)))

"""Server-side login sessions in SQLite (issue 9 item 5): create, is_live, revoke,
revoke_all, seen across connections (another process: `porch password`), and the
database file's setup (0600, WAL, schema versions)."""

from __future__ import annotations

import logging
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from porch.http_server.db import MIGRATIONS, SchemaTooNew, StateDb, db_path, migrate, open_db
from porch.http_server.sessions import Sessions, open_sessions


def test_create_is_live_revoke(tmp_path: Path) -> None:
    s = open_sessions(tmp_path)
    now = time.time()
    a = s.create(None, int(now) + 60, now)
    b = s.create("app:pkg:pub.os", int(now) + 60, now)
    assert a != b and s.is_live(a, now) and s.is_live(b, now)
    s.revoke(a)
    assert not s.is_live(a, now) and s.is_live(b, now)
    assert not s.is_live(b, now + 61), "expired"
    assert not s.is_live("never-issued", now)


def test_revocation_by_another_connection_is_seen_at_once(tmp_path: Path) -> None:
    """The worker caches answers; a revoke committed elsewhere (porch password, the
    next worker during a restart) drops that cache on the next check."""
    worker = open_sessions(tmp_path)
    now = time.time()
    sid = worker.create(None, int(now) + 60, now)
    keep = worker.create(None, int(now) + 60, now)
    assert worker.is_live(sid, now)  # cached
    cli = open_sessions(tmp_path)
    cli.revoke(sid)
    assert not worker.is_live(sid, now)
    assert worker.is_live(keep, now)
    assert cli.revoke_all() == 1
    assert not worker.is_live(keep, now)


def test_sessions_survive_reopening(tmp_path: Path) -> None:
    first = open_sessions(tmp_path)
    now = time.time()
    sid = first.create(None, int(now) + 60, now)
    gone = first.create(None, int(now) + 60, now)
    first.revoke(gone)
    first.close()
    again = open_sessions(tmp_path)
    assert again.is_live(sid, now) and not again.is_live(gone, now)


def test_expired_sessions_are_purged_on_create(tmp_path: Path) -> None:
    s = open_sessions(tmp_path)
    now = time.time()
    for _ in range(5):
        s.create(None, int(now) + 1, now)
    s.create(None, int(now) + 600, now + 10)
    assert s.live_count(now) == 1


def test_the_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    conn = open_db(db_path(tmp_path))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    Sessions(conn).create(None, int(time.time()) + 60)
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_migrations_run_once_in_order_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    steps = [("CREATE TABLE a (x)",), ("CREATE TABLE b (y)", "INSERT INTO b VALUES (1)")]
    conn = open_db(tmp_path / "t.db", steps[:1])
    assert migrate(conn, steps) == 2
    assert migrate(conn, steps) == 2  # nothing to do
    assert conn.execute("SELECT count(*) FROM b").fetchone()[0] == 1
    with pytest.raises(SchemaTooNew):
        migrate(conn, steps[:1])


def test_a_failed_migration_leaves_the_old_version(tmp_path: Path) -> None:
    steps = [("CREATE TABLE a (x)",), ("CREATE TABLE b (y)", "NOT SQL")]
    with pytest.raises(sqlite3.OperationalError):
        open_db(tmp_path / "t.db", steps)
    conn = sqlite3.connect(tmp_path / "t.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'b'").fetchone()[0] == 0


def test_a_session_expiring_now_is_over(tmp_path: Path) -> None:
    s = open_sessions(tmp_path)
    sid = s.create(None, 1000, now=900)
    assert s.is_live(sid, 999.5) and not s.is_live(sid, 1000)


def test_a_session_id_carries_144_random_bits(tmp_path: Path) -> None:
    s = open_sessions(tmp_path)
    sids = {s.create(None, int(time.time()) + 60) for _ in range(20)}
    assert len(sids) == 20 and {len(sid) for sid in sids} == {24}, "18 bytes, URL-safe base64"


def test_live_count_at_a_given_time_and_now(tmp_path: Path) -> None:
    s = open_sessions(tmp_path)
    now = time.time()
    s.create(None, int(now) + 60, now)
    s.create(None, int(now) + 600, now)
    assert s.live_count() == 2, "the clock's now"
    assert s.live_count(now + 100) == 1 and s.live_count(now + 700) == 0


def test_an_unreadable_store_opens_nothing_and_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: a session whose row cannot be read is not live."""
    monkeypatch.setattr(logging.getLogger("porch.http_server"), "disabled", False)
    conn = open_db(db_path(tmp_path))
    s = Sessions(conn)
    sid = s.create(None, int(time.time()) + 60)
    conn.close()
    with caplog.at_level(logging.ERROR, "porch.http_server"):
        assert not s.is_live(sid)
    assert "cannot read the sessions" in caplog.text and "closed database" in caplog.text


class CannotOpenForWriting(StateDb):
    def writer(self) -> sqlite3.Connection:
        raise PermissionError(13, "Permission denied", str(self.path))


def test_a_store_that_cannot_be_written_refuses_with_the_os_reason(tmp_path: Path) -> None:
    """Callers handle one kind of failure (sqlite3.Error); its text keeps the OS's."""
    state = CannotOpenForWriting(db_path(tmp_path), open_db(db_path(tmp_path)))
    s = Sessions(state)
    for attempt in (lambda: s.create(None, int(time.time()) + 60), lambda: s.revoke("sid"), s.revoke_all):
        with pytest.raises(sqlite3.OperationalError, match="Permission denied"):
            attempt()
    assert s.live_count() == 0


def test_the_answer_cache_is_bounded(tmp_path: Path) -> None:
    """A flood of made-up session ids must not grow the worker: at 10 000 answers the
    cache starts again."""
    s = open_sessions(tmp_path)
    for i in range(10_000):
        assert not s.is_live(f"made-up-{i}", 1.0)
    assert len(s._cache) == 10_000
    assert not s.is_live("one-more", 1.0)
    assert len(s._cache) == 1

"""StateHealth: a state that cannot be written is said once, loudly, then reminded, and
shown in /status until a write works again (issue 10 item 3)."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from porch.http_server.db import StateDb
from porch.http_server.sessions import Sessions
from porch.http_server.writable import StateHealth


def test_failure_is_logged_once_reminded_and_cleared(tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A test before may have run a tool that disables loggers existing then (logging.config).
    monkeypatch.setattr(logging.getLogger("porch.http_server"), "disabled", False)
    health = StateHealth(tmp_path, remind_s=100)
    assert health.status() == {"state_writable": True}
    with caplog.at_level(logging.INFO, "porch.http_server"):
        health.failed("saving the binding /a:b:c/x", "database or disk is full (SQLITE_FULL)")
        health.failed("saving the binding /a:b:c/y", "database or disk is full (SQLITE_FULL)")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "STATE NOT WRITABLE" in errors[0].getMessage()
    status = health.status()
    assert status["state_writable"] is False
    assert status["state_error"] == "saving the binding /a:b:c/y: database or disk is full (SQLITE_FULL)"
    assert status["state_error_since"]
    assert not health.remind(time.monotonic() + 10)
    assert health.remind(time.monotonic() + 200)
    health.succeeded()
    assert health.status() == {"state_writable": True} and not health.remind(time.monotonic() + 1000)


def test_an_unopenable_database_reads_empty_and_refuses_logins(tmp_path: Path) -> None:
    """A database that cannot be opened at all (here: a directory where the file
    should be) still gives a worker something to read; writes fail and are retried."""
    where = tmp_path / "http-server.db"
    where.mkdir()
    db = StateDb.open(where)
    assert db.read_only is not None and "cannot open" in db.read_only
    sessions = Sessions(db)
    assert not sessions.is_live("any")
    with pytest.raises(sqlite3.Error):
        sessions.create(None, int(time.time()) + 60)
    where.rmdir()  # fixed: the next write opens the file read-write
    sid = sessions.create(None, int(time.time()) + 60)
    assert db.read_only is None and sessions.is_live(sid)

"""BindingStore: the bindings and static content in the state database (a temporary
state directory; no processes). A full disk is SQLite's own: `PRAGMA max_page_count`
makes a commit fail with SQLITE_FULL exactly as a full filesystem does (issue 10 item 3)."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from porch.http_server import legacy
from porch.http_server.bindings import BindingTable, HttpBinding, Static, WsBinding, http_entry, ws_entry
from porch.http_server.db import MIGRATIONS, StateDb, _snapshot, db_path, open_db
from porch.http_server.state import BindingStore, StateNotSaved
from porch.http_server.writable import StateHealth

APP = "a:pkg:pub.os"


def store_in(state: Path) -> BindingStore:
    return BindingStore(StateDb.open(db_path(state)), state, StateHealth(state))


def http(path: str, app: str | None = APP, body: bytes | None = None) -> HttpBinding:
    return HttpBinding(path, app, static=Static.of(body, "text/plain") if body is not None else None)


def save(store: BindingStore, table: BindingTable, binding: HttpBinding | WsBinding) -> None:
    store.save(binding)
    table.bind(binding)


def bodies(store: BindingStore) -> list[bytes]:
    return sorted(row[0] for row in store.db.reader().execute("SELECT body FROM static_content"))


def test_saved_bindings_load_into_the_same_table(tmp_path: Path) -> None:
    store, table = store_in(tmp_path), BindingTable()
    assert store.load().to_data() == table.to_data()
    save(store, table, http(f"/{APP}/x"))
    save(store, table, http(f"/{APP}/f.txt", body=b"file"))
    save(store, table, WsBinding(f"/{APP}/ws", APP, True, None, False))
    save(store, table, http(f"/{APP}/x", app=None))  # unbound: a tombstone, in its place
    save(store, table, http(f"/{APP}/y"))
    again = store_in(tmp_path).load()
    assert again.to_data() == table.to_data()
    assert [p for p, _ in again.http.items()][1:] == [f"/{APP}/x", f"/{APP}/f.txt", f"/{APP}/y"]
    assert again.http.get(f"/{APP}/x") == HttpBinding(f"/{APP}/x", None)
    static = again.http.get(f"/{APP}/f.txt")
    assert static is not None and static.static == Static.of(b"file", "text/plain")
    # Nothing but the database (and its WAL) in the state directory.
    names = {p.name for p in tmp_path.iterdir()}
    assert names <= {"http-server.db", "http-server.db-wal", "http-server.db-shm"}, names


def test_a_body_no_binding_names_is_deleted_with_the_change(tmp_path: Path) -> None:
    store, table = store_in(tmp_path), BindingTable()
    save(store, table, http(f"/{APP}/a", body=b"shared"))
    save(store, table, http(f"/{APP}/b", body=b"shared"))
    save(store, table, http(f"/{APP}/a", body=b"new"))
    assert bodies(store) == [b"new", b"shared"], "b still names the shared body"
    save(store, table, http(f"/{APP}/b", app=None))
    assert bodies(store) == [b"new"]
    for i in range(50):
        save(store, table, http(f"/{APP}/same", body=str(i).encode()))
    assert bodies(store) == [b"49", b"new"]


def test_a_full_disk_refuses_the_save_and_keeps_what_was_saved(tmp_path: Path) -> None:
    """A commit that fails (SQLITE_FULL) raises StateNotSaved, saves nothing, and marks
    the state not writable; once there is room the next save works (no reopening)."""
    store, table = store_in(tmp_path), BindingTable()
    save(store, table, http(f"/{APP}/kept", body=b"kept"))
    conn = store.db.reader()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StateNotSaved) as refused:
        store.save(http(f"/{APP}/big", body=b"x" * 100_000))
    assert "SQLITE_FULL" in refused.value.reason
    assert not store.health.writable and "SQLITE_FULL" in store.health.status()["state_error"]
    assert store_in(tmp_path).load().to_data() == table.to_data(), "nothing of the refused bind"
    conn.execute("PRAGMA max_page_count = 1000000")
    save(store, table, http(f"/{APP}/big", body=b"x" * 100_000))
    assert store.health.writable and store.health.status() == {"state_writable": True}
    assert store_in(tmp_path).load().to_data() == table.to_data()


def write_legacy(state: Path, table: BindingTable, journal: list[HttpBinding | WsBinding]) -> None:
    """The files an older porch kept: a snapshot, a journal of changes since, static/."""
    data, blobs = table.to_data()
    (state / "bindings.json").write_text(json.dumps(data))
    lines = []
    for b in journal:
        if isinstance(b, WsBinding):
            lines.append(json.dumps({"ws": ws_entry(b)}))
        else:
            entry, blob = http_entry(b)
            if blob is not None:
                blobs[blob[0]] = blob[1]
            lines.append(json.dumps({"http": entry}))
    (state / "bindings.journal").write_text("\n".join(lines) + '\n{"http": {"path": "/torn"')
    (state / "static").mkdir()
    for digest, body in blobs.items():
        (state / "static" / digest).write_bytes(body)
    (state / "static" / ".0123abcd.tmp0_xyz").write_bytes(b"an interrupted write")


def legacy_node(state: Path) -> BindingTable:
    """An older porch's state on disk; the table it describes."""
    table = BindingTable()
    table.bind(http(f"/{APP}/one", body=b"one"))
    table.bind(WsBinding(f"/{APP}/ws", APP, False, None, True))
    later: list[HttpBinding | WsBinding] = [http(f"/{APP}/two"), http(f"/{APP}/one", app=None),
                                            http(f"/{APP}/three", body=b"three")]
    write_legacy(state, table, later)
    for b in later:
        table.bind(b)
    return table


class Unwritable(StateDb):
    """A database whose file cannot be opened for writing while `broken`."""

    broken = True

    def writer(self) -> sqlite3.Connection:
        if self.broken:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return super().writer()


def test_an_older_nodes_files_are_imported_once_then_removed(tmp_path: Path) -> None:
    expected = legacy_node(tmp_path)
    store = store_in(tmp_path)
    assert store.load().to_data() == expected.to_data()
    for name in ("bindings.json", "bindings.journal", "bindings.lock", "static"):
        assert not (tmp_path / name).exists(), name
    assert bodies(store) == [b"three"], "the unbound path's body was not carried over"
    # Imported once: old files appearing again are not read (and are removed).
    write_legacy(tmp_path, BindingTable(), [http(f"/{APP}/stale")])
    assert store_in(tmp_path).load().to_data() == expected.to_data()
    assert not (tmp_path / "bindings.json").exists()


def test_unwritable_state_serves_the_old_files_and_imports_them_at_the_first_save(tmp_path: Path) -> None:
    """A node upgraded while its disk cannot be written: it reads the old files as they
    are (and changes nothing); the first save that can write imports them first."""
    expected = legacy_node(tmp_path)
    reading = Unwritable(db_path(tmp_path), _snapshot(db_path(tmp_path), MIGRATIONS), "read-only disk")
    store = BindingStore(reading, tmp_path, StateHealth(tmp_path))
    table = store.load()
    assert table.to_data() == expected.to_data()
    assert (tmp_path / "bindings.json").exists() and not db_path(tmp_path).exists()
    assert not store.health.writable
    with pytest.raises(StateNotSaved):
        store.save(http(f"/{APP}/four"))
    reading.broken = False  # the disk is writable again
    save(store, table, http(f"/{APP}/four"))
    assert reading.read_only is None
    assert store_in(tmp_path).load().to_data() == table.to_data()
    assert not (tmp_path / "bindings.json").exists()


def test_a_read_only_copy_of_an_older_schema_keeps_its_sessions_and_refuses_writes(tmp_path: Path) -> None:
    old = open_db(db_path(tmp_path), MIGRATIONS[:1])
    old.execute("INSERT INTO sessions VALUES ('sid', NULL, 1, 2)")
    old.close()
    copy = _snapshot(db_path(tmp_path), MIGRATIONS)
    assert copy.execute("SELECT sid FROM sessions").fetchall() == [("sid",)]
    assert copy.execute("SELECT count(*) FROM http_bindings").fetchone() == (0,)
    with pytest.raises(sqlite3.OperationalError):
        copy.execute("DELETE FROM sessions")


def test_a_read_only_copy_of_a_schema_before_direct_keeps_its_bindings(tmp_path: Path) -> None:
    """A file at schema 2 (before bindings could be direct) read where it cannot be
    migrated (a read-only or full disk): its bindings are served, not direct (the
    copy once selected the new column from the old table, failed, and lost them all)."""
    old = open_db(db_path(tmp_path), MIGRATIONS[:2])
    old.execute("INSERT INTO http_bindings (path, app, authenticated, local_only, secure_subdomain,"
                " timeout_ms) VALUES (?, ?, 0, 0, NULL, 0)", (f"/{APP}/x", APP))
    old.execute("INSERT INTO ws_bindings (path, app, authenticated, secure_subdomain, extension)"
                " VALUES (?, ?, 0, NULL, 0)", (f"/{APP}/ws", APP))
    old.close()
    copy = _snapshot(db_path(tmp_path), MIGRATIONS)
    assert copy.execute("SELECT path, app, direct FROM http_bindings").fetchall() == [(f"/{APP}/x", APP, 0)]
    assert copy.execute("SELECT path, app, direct FROM ws_bindings").fetchall() == [(f"/{APP}/ws", APP, 0)]


def test_maintain_removes_orphan_bodies_and_reports_a_state_it_cannot_write(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A test before may have run a tool that disables loggers existing then (logging.config).
    monkeypatch.setattr(logging.getLogger("porch.http_server"), "disabled", False)
    store, table = store_in(tmp_path), BindingTable()
    save(store, table, http(f"/{APP}/a", body=b"used"))
    store.db.reader().execute("INSERT INTO static_content (sha256, body) VALUES ('00', x'00')")
    store.maintain()
    assert bodies(store) == [b"used"] and store.health.writable
    reading = StateDb(db_path(tmp_path), store.db.reader(), "cannot open it for writing: EROFS")
    unwritable = BindingStore(reading, tmp_path, StateHealth(tmp_path))
    with caplog.at_level(logging.ERROR, "porch.http_server"):
        unwritable.maintain()
    assert not unwritable.health.writable and "EROFS" in unwritable.health.reason
    assert "STATE NOT WRITABLE" in caplog.text
    assert legacy.read(tmp_path) is None

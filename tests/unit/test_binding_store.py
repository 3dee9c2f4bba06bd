"""BindingStore: the snapshot plus journal the http-server keeps its bindings in
(files in a temporary state directory; no processes)."""

from __future__ import annotations

from pathlib import Path

from porch.http_server.bindings import BindingTable, HttpBinding, Static, WsBinding
from porch.http_server.state import BindingStore


def bind(table: BindingTable, store: BindingStore, path: str, app: str | None = "a:pkg:pub.os",
         body: bytes | None = None) -> None:
    static = Static.of(body, "text/plain") if body is not None else None
    table.bind_http(HttpBinding(path, app, static=static))
    store.record(table, "http", path)


def test_records_replay_into_the_same_table_and_are_folded_at_load(tmp_path: Path) -> None:
    store, table = BindingStore(tmp_path), BindingTable()
    bind(table, store, "/a:pkg:pub.os/x")
    bind(table, store, "/a:pkg:pub.os/f.txt", body=b"file")
    table.bind_ws(WsBinding("/a:pkg:pub.os/ws", "a:pkg:pub.os", True, None, False))
    store.record(table, "ws", "/a:pkg:pub.os/ws")
    bind(table, store, "/a:pkg:pub.os/x", app=None)  # unbound: a tombstone, in place
    assert not (tmp_path / "bindings.json").exists(), "no snapshot rewritten per bind"
    assert len((tmp_path / "bindings.journal").read_bytes().splitlines()) == 4
    again = BindingStore(tmp_path).load()
    assert again.to_data() == table.to_data()
    assert again.http.get("/a:pkg:pub.os/x") == HttpBinding("/a:pkg:pub.os/x", None)
    # Loading folded the journal into a snapshot.
    assert (tmp_path / "bindings.json").exists() and not (tmp_path / "bindings.journal").exists()
    assert BindingStore(tmp_path).load().to_data() == table.to_data()


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    store, table = BindingStore(tmp_path), BindingTable()
    bind(table, store, "/a:pkg:pub.os/kept")
    with (tmp_path / "bindings.journal").open("ab") as f:
        f.write(b'{"http": {"path": "/a:pkg:pub.os/torn", "app"')  # a crash mid-append
    again = BindingStore(tmp_path).load()
    assert [p for p, _ in again.http.items()] == ["/rpc:distro:sys/message", "/a:pkg:pub.os/kept"]


def test_the_journal_is_folded_once_it_outgrows_the_table(tmp_path: Path) -> None:
    store, table = BindingStore(tmp_path), BindingTable()
    for i in range(BindingStore.COMPACT_MIN):
        bind(table, store, "/a:pkg:pub.os/same", body=str(i).encode())  # rebinding one path
    assert not (tmp_path / "bindings.journal").exists(), "folded into the snapshot"
    bind(table, store, "/a:pkg:pub.os/same", body=b"last")
    assert len((tmp_path / "bindings.journal").read_bytes().splitlines()) == 1
    again = BindingStore(tmp_path).load()
    binding = again.http.get("/a:pkg:pub.os/same")
    assert binding is not None and binding.static is not None and binding.static.body == b"last"
    # Content no binding uses any more is removed at load; what is used stays.
    assert [f.read_bytes() for f in (tmp_path / "static").iterdir()] == [b"last"]

"""The node's state on a disk that fills up or turns read-only, interrupted writes, and
the address the worker says it listens on (issue 10 items 3, 7 and 8).

The disk cases mount a small tmpfs on the node's state/ directory (logs and sockets
stay on the real disk), fill it to ENOSPC or remount it read-only, against a whole node
run by `porch up`: they need root (and a kernel that lets it mount), and are skipped
with the reason otherwise.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from porch.http.server import HttpServer, HttpServerError
from porch.node.home import NodeHome
from support.node import PY, SupervisedNode, children, free_port, running, service_env, wait_for

APP = "app:state:sys"
CONFIG = f'node = "disk.os"\n[[process]]\nid = "{APP}"\ncapabilities = ["http-server:distro:sys"]\n'
STATUS = "/http-server:distro:sys/status"


# ---------------------------------------------------------------------- the disk


def _mount_refusal() -> str | None:
    """Why this test cannot mount a tmpfs here, or None if it can."""
    if os.geteuid() != 0:
        return "mounting a tmpfs for the node's state needs root"
    probe = tempfile.mkdtemp(prefix="porch-mnt-", dir="/tmp")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
                              capture_output=True, text=True)
        if done.returncode != 0:
            return f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
        subprocess.run(["umount", probe], check=True)
        return None
    except OSError as exc:
        return f"cannot mount a tmpfs here: {exc}"
    finally:
        os.rmdir(probe)


class StateDisk:
    """A small tmpfs mounted on a node home's state/ (before `porch up`)."""

    def __init__(self, size: str = "4m") -> None:
        self.size = size
        self.path: Path | None = None
        self.filler: Path | None = None
        self._bound = False

    def mount(self, home: NodeHome) -> None:
        self.path = home.state_dir
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs",
                        str(self.path)], check=True)

    def fill(self) -> None:
        """Fill it up: nothing more can be allocated (writes fail with ENOSPC)."""
        assert self.path is not None
        self.filler = self.path / "filler"
        with self.filler.open("wb", buffering=0) as f:
            for chunk in (1 << 16, 1 << 12, 1):
                try:
                    while True:
                        f.write(b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc

    def free(self) -> None:
        assert self.filler is not None
        self.filler.unlink()

    def read_only(self) -> None:
        """New opens of state/ fail with EROFS: a read-only bind mount over it (a
        read-only remount of the tmpfs itself is refused while the worker has files
        open for writing; files opened before keep working, as they would)."""
        if not self._bound:
            subprocess.run(["mount", "--bind", str(self.path), str(self.path)], check=True)
            self._bound = True
        subprocess.run(["mount", "-o", "remount,bind,ro", str(self.path)], check=True)

    def writable(self) -> None:
        subprocess.run(["mount", "-o", "remount,bind,rw", str(self.path)], check=True)

    def unmount(self) -> None:
        while self.path is not None and os.path.ismount(self.path):
            if subprocess.run(["umount", str(self.path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(self.path)], check=True)


@pytest.fixture
def disk_node() -> Iterator[tuple[SupervisedNode, StateDisk, int]]:
    refusal = _mount_refusal()
    if refusal:
        pytest.skip(refusal)
    disk = StateDisk()
    port = free_port()
    node = SupervisedNode(CONFIG, "--port", str(port), prepare=disk.mount)
    try:
        assert node.up.returncode == 0, node.up.stdout + node.up.stderr
        yield node, disk, port
    finally:
        node.close()
        disk.unmount()
        subprocess.run(["rm", "-rf", str(node.dir)], check=False)


# ---------------------------------------------------------------------- helpers


def get(port: int, path: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def status(port: int) -> dict[str, Any]:
    answer = get(port, STATUS)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def serves(port: int, path: str, body: bytes) -> bool:
    """The path answers 200 with body (a worker that does not answer fails the poll at
    5 s per try, never hangs the test)."""
    try:
        answer = get(port, f"/{APP}{path}")
    except requests.RequestException:
        return False
    return answer.status_code == 200 and answer.content == body


def bind(server: HttpServer, path: str, body: bytes) -> None:
    server.bind_http_static_path(path, False, False, "text/plain", body)


def refused_kind(server: HttpServer, path: str, body: bytes) -> str:
    with pytest.raises(HttpServerError) as refused:
        bind(server, path, body)
    return refused.value.kind


def big_body(disk: StateDisk) -> bytes:
    """Larger than the database's WAL: a commit of it needs new space on the disk (a
    small one might fit in space SQLite allocated before)."""
    assert disk.path is not None
    wal = disk.path / "http-server.db-wal"
    return b"b" * max(512 * 1024, 2 * (wal.stat().st_size if wal.exists() else 0))


def http_log(node: SupervisedNode) -> str:
    path = node.home.logs_dir / "http-server.log"
    return path.read_text(errors="replace") if path.exists() else ""


def worker_of(node: SupervisedNode) -> int:
    (worker,) = wait_for(lambda: children(node.pid_of("http-server")), 10, what="the worker")
    return int(worker)


def restarted_worker(node: SupervisedNode, old: int) -> int:
    """The new worker, once it has taken over: a restart runs both for a moment (the old
    one finishes what it holds and exits), and until then the old one may answer."""
    def new() -> int | None:
        kids = [k for k in children(node.pid_of("http-server")) if k != old and running(k)]
        return kids[0] if kids else None
    worker = int(wait_for(new, 30, 0.1, "a new worker"))
    wait_for(lambda: not running(old), 30, 0.1, "the old worker to hand over and exit")
    return worker


def status_line(node: SupervisedNode) -> str:
    """What `porch status` says of the state: its http line's end (and its warning)."""
    shown = node.cli("status")
    http = next((line for line in shown.stdout.splitlines() if line.startswith("http ")), shown.stdout)
    state = http.split("  ", 2)[-1]
    return state + (f" | {shown.stderr.strip()}" if shown.stderr.strip() else "")


# ---------------------------------------------------------------------- item 3


def test_a_bind_on_a_full_disk_is_refused_not_served_and_works_once_there_is_room(
        disk_node: tuple[SupervisedNode, StateDisk, int]) -> None:
    """Issue 10 item 3: a bind that cannot be saved is refused with StateNotSaved (was:
    acknowledged Ok, served, and gone after the next restart); freeing space is enough
    for the next bind to work, without a restart."""
    node, disk, port = disk_node
    server = HttpServer(node.process(APP))
    bind(server, "/saved", b"saved")
    assert serves(port, "/saved", b"saved")
    body = big_body(disk)
    disk.fill()
    assert refused_kind(server, "/big", body) == "StateNotSaved"
    assert get(port, f"/{APP}/big").status_code == 404, "what is served is what is saved"
    assert serves(port, "/saved", b"saved")
    now = status(port)
    assert now["state_writable"] is False and "SQLITE_FULL" in now["state_error"], now
    shown = status_line(node)
    assert shown.startswith("state NOT WRITABLE since") and "SQLITE_FULL" in shown, shown
    assert "STATE NOT WRITABLE" in http_log(node)
    disk.free()
    bind(server, "/big", body)
    assert serves(port, "/big", body)
    assert status(port)["state_writable"] is True
    assert status_line(node) == "state writable"


def test_a_worker_restarted_on_a_full_disk_serves_what_was_saved(
        disk_node: tuple[SupervisedNode, StateDisk, int]) -> None:
    """Issue 10 item 3: the worker killed (-9) while the disk is full comes back and
    serves every binding saved before, read-only, and says so (was: it failed folding
    the journal, exited, and was restarted in a loop while every client waited)."""
    node, disk, port = disk_node
    server = HttpServer(node.process(APP))
    for i in range(5):
        bind(server, f"/page{i}", f"page {i}".encode())
    body = big_body(disk)
    disk.fill()
    worker = worker_of(node)
    os.kill(worker, signal.SIGKILL)
    restarted_worker(node, worker)
    wait_for(lambda: all(serves(port, f"/page{i}", f"page {i}".encode()) for i in range(5)), 30, 0.2,
             "the saved bindings served by the new worker")
    now = status(port)
    assert now["state_writable"] is False, now
    # (the worker logs through supervisord, which writes the file when it gets to it)
    wait_for(lambda: "READ-ONLY" in http_log(node), 15, 0.2, "the worker to log that it is read-only")
    assert status_line(node).startswith("state NOT WRITABLE since"), status_line(node)
    assert refused_kind(server, "/big", body) == "StateNotSaved"
    disk.free()
    bind(server, "/big", body)
    assert serves(port, "/big", body) and status(port)["state_writable"] is True


def test_a_worker_restarted_on_a_read_only_disk_serves_what_was_saved(
        disk_node: tuple[SupervisedNode, StateDisk, int]) -> None:
    """Issue 10 item 3, EROFS: a worker started on a read-only state serves the saved
    bindings and says it is read-only (was: it exited at once, in a loop), binds are
    refused meanwhile, and once the disk is writable again they work without a
    restart. Twice: after a restart (`porch restart http-server`: the database's WAL
    is left, the old worker could not remove it) and after a clean close (no WAL: the
    database can only be read as immutable)."""
    node, disk, port = disk_node
    server = HttpServer(node.process(APP))
    bind(server, "/saved", b"saved")
    disk.read_only()
    worker = worker_of(node)
    assert node.cli("restart", "http-server").returncode == 0
    restarted_worker(node, worker)
    wait_for(lambda: serves(port, "/saved", b"saved"), 30, 0.2, "the saved binding after a restart")
    now = status(port)
    assert now["state_writable"] is False and "Read-only file system" in now["state_error"], now
    assert status_line(node).startswith("state NOT WRITABLE since"), status_line(node)
    # (the worker logs through supervisord, which writes the file when it gets to it)
    wait_for(lambda: "READ-ONLY" in http_log(node), 15, 0.2, "the worker to log that it is read-only")
    assert refused_kind(server, "/refused", b"no") == "StateNotSaved"
    assert get(port, f"/{APP}/refused").status_code == 404, "what is served is what is saved"
    disk.writable()
    bind(server, "/second", b"second")  # no restart: the database is reopened read-write
    assert serves(port, "/second", b"second") and status(port)["state_writable"] is True
    # The worker stops and closes the database cleanly (no WAL left); the keeper is
    # held (SIGSTOP) until the disk is read-only, then starts the next worker.
    keeper = node.pid_of("http-server")
    worker = worker_of(node)
    os.kill(keeper, signal.SIGSTOP)
    try:
        os.kill(worker, signal.SIGTERM)
        wait_for(lambda: not running(worker), 15, 0.1, "the worker to stop")
        assert disk.path is not None and not (disk.path / "http-server.db-wal").exists()
        disk.read_only()
    finally:
        os.kill(keeper, signal.SIGCONT)
    restarted_worker(node, worker)
    wait_for(lambda: serves(port, "/saved", b"saved") and serves(port, "/second", b"second"), 30, 0.2,
             "the saved bindings after a start on a read-only disk")
    assert status(port)["state_writable"] is False
    assert refused_kind(server, "/refused", b"no") == "StateNotSaved"
    disk.writable()
    bind(server, "/third", b"third")
    assert serves(port, "/third", b"third") and status(port)["state_writable"] is True


# ---------------------------------------------------------------------- item 7

WRITER = """
import os, sys
from pathlib import Path
import porch.files

def stall(fd):  # the write is done, its fsync never returns: a crash will come here
    print("writing", flush=True)
    os.kill(os.getpid(), 19)  # SIGSTOP: the test decides what happens next
porch.files.os.fsync = stall
porch.files.write_atomic(Path(sys.argv[1]), b"x" * 100_000)
"""


def test_files_of_interrupted_writes_are_removed_at_start(tmp_path: Path) -> None:
    """Issue 10 item 7: a writer killed (-9) in the middle of an atomic write leaves its
    temporary file; the next worker start removes it (and the old store's leftovers),
    but never the file of a write still in progress (a stopped writer, its lock held)."""
    port = free_port()
    node = SupervisedNode(CONFIG, "--port", str(port))
    try:
        assert node.up.returncode == 0, node.up.stdout + node.up.stderr
        state = node.home.state_dir
        worker_of(node)
        script = tmp_path / "writer.py"
        script.write_text(textwrap.dedent(WRITER))
        writers = {}
        for name in ("http-client-ws.json", "live.json"):
            writers[name] = subprocess.Popen([PY, str(script), str(state / name)], stdout=subprocess.PIPE,
                                             env=service_env(node.home.root))
        for proc in writers.values():
            assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"
        temp = {name: [p for p in state.iterdir() if p.name.startswith(f".{name}.")] for name in writers}
        assert all(len(found) == 1 for found in temp.values()), temp
        writers["http-client-ws.json"].send_signal(signal.SIGKILL)  # interrupted for good
        writers["http-client-ws.json"].wait(10)
        # What older versions left: the port's temp file, static/ with a temporary file.
        (state / "port.tmp").write_text("8080\n")
        (state / "static").mkdir(exist_ok=True)
        (state / "static" / ".0f00ba47.k2j4x9ab").write_bytes(b"half")
        old = time.time() - 3600
        for path in [*temp["http-client-ws.json"], *temp["live.json"], state / "port.tmp"]:
            os.utime(path, (old, old))  # interrupted a while ago
        worker = worker_of(node)
        log_from = len(http_log(node))
        os.kill(worker, signal.SIGKILL)
        restarted_worker(node, worker)
        wait_for(lambda: "serving http on" in http_log(node)[log_from:], 20, 0.1, "the new worker serving")
        assert not any(p.exists() for p in temp["http-client-ws.json"]), "the killed writer's file"
        assert not (state / "port.tmp").exists() and not (state / "static").exists()
        assert all(p.exists() for p in temp["live.json"]), "a write in progress is kept"
        leftovers = [p.name for p in state.iterdir() if p.name.startswith(".")]
        assert leftovers == [p.name for p in temp["live.json"]], leftovers
        assert "left by interrupted writes" in http_log(node)[log_from:], "what was removed is logged"
        writers["live.json"].kill()
        writers["live.json"].wait(10)
    finally:
        node.close()


# ---------------------------------------------------------------------- item 8


def test_the_worker_logs_the_address_it_listens_on(tmp_path: Path) -> None:
    """Issue 10 item 8: `porch up --host 127.0.0.1` -> the worker's log line says
    127.0.0.1, the address the keeper's socket is bound to (was: 0.0.0.0)."""
    port = free_port()
    node = SupervisedNode(CONFIG, "--port", str(port), "--host", "127.0.0.1")
    try:
        assert node.up.returncode == 0, node.up.stdout + node.up.stderr
        wait_for(lambda: "serving http on" in http_log(node), 20, 0.1, "the worker's serving line")
        line = next(x for x in http_log(node).splitlines() if "serving http on" in x)
        assert f"serving http on 127.0.0.1:{port} " in line, line
    finally:
        node.close()


# ---------------------------------------------------------------------- migration


def test_an_older_nodes_bindings_are_imported_and_served(tmp_path: Path) -> None:
    """A node home from before the database (bindings.json, bindings.journal, static/)
    comes up serving the same paths; its files are imported once and removed."""
    page, gone = b"<p>kept</p>", b"unbound later"
    digest = {body: hashlib.sha256(body).hexdigest() for body in (page, gone)}

    def entry(path: str, app: str | None, body: bytes | None = None) -> dict[str, Any]:
        e: dict[str, Any] = {"path": f"/{APP}{path}", "app": app, "authenticated": False,
                             "local_only": False, "secure_subdomain": None, "timeout_ms": 0}
        if body is not None:
            e["static"] = {"sha256": digest[body], "mime": "text/html"}
        return e

    def old_state(home: NodeHome) -> None:
        state = home.state_dir
        snapshot = {"version": 1, "http": [entry("/page", APP, page), entry("/gone", APP, gone)], "ws": []}
        (state / "bindings.json").write_text(json.dumps(snapshot))
        (state / "bindings.journal").write_text(json.dumps({"http": entry("/gone", None)}) + "\n")
        (state / "static").mkdir(mode=0o700)
        for body in (page, gone):
            (state / "static" / digest[body]).write_bytes(body)

    port = free_port()
    node = SupervisedNode(CONFIG, "--port", str(port), prepare=old_state)
    try:
        assert node.up.returncode == 0, node.up.stdout + node.up.stderr
        wait_for(lambda: serves(port, "/page", page), 30, 0.2, "the imported binding")
        assert get(port, f"/{APP}/gone").status_code == 404
        state = node.home.state_dir
        for name in ("bindings.json", "bindings.journal", "static"):
            assert not (state / name).exists(), name
        assert "imported 2 binding(s)" in http_log(node)
        worker = worker_of(node)
        os.kill(worker, signal.SIGKILL)  # and a restart serves it from the database alone
        restarted_worker(node, worker)
        wait_for(lambda: serves(port, "/page", page), 30, 0.2, "the binding after a restart")
    finally:
        node.close()

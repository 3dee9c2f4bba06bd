"""The listening socket held outside the keeper (issue 10 item 5): systemd's
LISTEN_FDS protocol and the holder that hands a copy over a Unix socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from porch.node.listen_socket import Holder, NotAListeningSocket, fetch, from_systemd, listening


def test_variables_for_another_process_are_ignored_and_removed() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http", "HOME": "/x"}
    assert from_systemd(env) is None
    assert env == {"HOME": "/x"}, "no child may take them for its own"


def test_no_variables_no_socket() -> None:
    assert from_systemd({}) is None


@pytest.mark.parametrize("count", ["0", "x", "-1"])
def test_a_bad_count_is_no_socket(count: str) -> None:
    assert from_systemd({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": count}) is None


def test_only_a_listening_tcp_socket_is_taken() -> None:
    with socket.socket() as unbound:
        with pytest.raises(NotAListeningSocket):
            listening(unbound.fileno())
        assert unbound.fileno() >= 0, "a refused descriptor is left open for its owner"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix, pytest.raises(NotAListeningSocket):
        listening(unix.fileno())


def test_holder_hands_a_copy_that_accepts_on_the_same_port(tmp_path: Path) -> None:
    original = socket.socket()
    original.bind(("127.0.0.1", 0))
    original.listen()
    held = listening(os.dup(original.fileno()))
    original.close()
    holder = Holder(held, tmp_path / "http-listen.sock")
    try:
        assert oct((tmp_path / "http-listen.sock").stat().st_mode & 0o777) == "0o600"
        copy = fetch(tmp_path / "http-listen.sock")
        assert copy is not None
        port = held.getsockname()[1]
        assert copy.getsockname()[1] == port
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            copy.setblocking(True)
            conn, _ = copy.accept()
            conn.close()
        copy.close()
    finally:
        holder.close()
        held.close()
    assert not (tmp_path / "http-listen.sock").exists()
    assert fetch(tmp_path / "http-listen.sock") is None

"""The link package: where both ends find the kernel's socket."""

from __future__ import annotations

import pytest

from porch.link.codec import socket_path


def test_zmtp_serves_ipc_paths_and_abstract_names() -> None:
    assert socket_path("ipc:///run/k.sock") == "/run/k.sock"
    assert socket_path("ipc://@porch-k") == "\0porch-k"
    with pytest.raises(ValueError, match="ipc://"):
        socket_path("tcp://127.0.0.1:5555")

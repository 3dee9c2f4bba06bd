"""The link package: where both ends find the kernel's socket."""

from __future__ import annotations

import pytest

from porch.link.codec import socket_path


def test_zmtp_serves_ipc_paths_and_abstract_names() -> None:
    assert socket_path("ipc:///run/k.sock") == "/run/k.sock"
    assert socket_path("ipc://@porch-k") == "\0porch-k"
    with pytest.raises(ValueError, match="ipc://"):
        socket_path("tcp://127.0.0.1:5555")


def test_the_heartbeat_interval_comes_from_the_environment_within_bounds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from porch.link import heartbeat_ivl_s
    from porch.link.dealer import Dealer
    from porch.link.server import ZmtpServer

    monkeypatch.delenv("PORCH_HEARTBEAT_IVL_S", raising=False)
    assert heartbeat_ivl_s() == 1.0
    for text, expected in (("0.4", 0.4), ("2", 2.0), ("0", 1.0), ("100", 1.0), ("fast", 1.0)):
        monkeypatch.setenv("PORCH_HEARTBEAT_IVL_S", text)
        assert heartbeat_ivl_s() == expected, text
    monkeypatch.setenv("PORCH_HEARTBEAT_IVL_S", "0.4")
    dealer = Dealer("ipc:///tmp/x.sock")
    assert (dealer.heartbeat_ivl_s, dealer.heartbeat_timeout_s) == (0.4, 2.0)
    server = ZmtpServer("ipc:///tmp/x.sock")
    assert (server.heartbeat_ivl_ms, server.heartbeat_timeout_ms) == (400, 2000)

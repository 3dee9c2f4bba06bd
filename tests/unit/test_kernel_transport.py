"""The kernel's transport setting: `[kernel] transport` picks one, a typo is an error."""

from __future__ import annotations

import pytest

from porch.kernel.libzmq_transport import LibzmqTransport
from porch.kernel.router import TRANSPORTS, make_transport
from porch.kernel.zmtp import ZmtpTransport, socket_path
from porch.node.config import ConfigError, KernelSettings, parse


@pytest.mark.parametrize("name", TRANSPORTS)
def test_config_selects_a_transport(name: str) -> None:
    config = parse(f'[kernel]\ntransport = "{name}"\n')
    assert config.kernel.transport == name


def test_default_transport_is_a_known_one() -> None:
    assert KernelSettings().transport in TRANSPORTS


def test_unknown_transport_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="transport"):
        parse('[kernel]\ntransport = "zeromq"\n')


def test_make_transport() -> None:
    assert isinstance(make_transport("zmtp", "ipc:///tmp/x.sock"), ZmtpTransport)
    libzmq = make_transport("libzmq", "ipc:///tmp/x.sock")
    assert isinstance(libzmq, LibzmqTransport)
    libzmq.sock.close(0)
    with pytest.raises(ValueError, match="unknown kernel transport"):
        make_transport("nope", "ipc:///tmp/x.sock")


def test_zmtp_serves_ipc_paths_and_abstract_names() -> None:
    assert socket_path("ipc:///run/k.sock") == "/run/k.sock"
    assert socket_path("ipc://@porch-k") == "\0porch-k"
    with pytest.raises(ValueError, match="ipc://"):
        socket_path("tcp://127.0.0.1:5555")

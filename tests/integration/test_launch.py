"""User processes as porch.toml declares them, under a node started with a bare PATH
(as systemd or a hand-run supervisord would): `command = "python app.py"` runs the
Python that has porch installed, and the README's echo example answers `porch send`."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from support.node import PY, free_port, service_env, wait_for

REPO = Path(__file__).resolve().parents[2]
BARE_PATH = "/usr/bin:/bin"  # no virtualenv on it: a bare `python` would not import porch


def cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "porch.cli", *args, "--home", str(home)], capture_output=True,
                          text=True, timeout=timeout, env=service_env(home, PATH=BARE_PATH))


def test_a_bare_python_command_runs_the_nodes_python_and_echo_answers_porch_send() -> None:
    home = Path(tempfile.mkdtemp(prefix="porch-launch-", dir="/tmp")) / "h"
    home.mkdir(mode=0o700)
    (home / "porch.toml").write_text(
        'node = "launch.os"\n'
        "[http_server]\n"
        f"port = {free_port()}\n"
        "[[process]]\n"
        'id = "echo:demo:sys"\n'
        f'command = "python {REPO / "examples/echo/app.py"}"\n'
    )
    try:
        up = cli(home, "up", "--detach", timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr

        def answers() -> str | None:
            sent = cli(home, "send", "echo:demo:sys", "hi")
            return sent.stdout if sent.returncode == 0 else None

        out = wait_for(answers, 30, 0.3, "echo:demo:sys to answer porch send")
        assert out.strip() == "echo: hi"
        log = cli(home, "logs", "echo:demo:sys").stdout
        assert "echo:demo:sys ready" in log and "not found" not in log
    finally:
        cli(home, "down")
        shutil.rmtree(home.parent, ignore_errors=True)

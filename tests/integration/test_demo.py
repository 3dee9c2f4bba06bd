"""The README's run command: `porch up --demo` from the checkout serves the examples,
and the README's `porch send echo:demo:sys hi` is answered; the demo is for that run
only (issue 14 item 7: it used to be written into porch.toml for good)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import requests

from support.node import PY, free_port, service_env, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_porch_up_demo_serves_hello_and_chat_and_echo_answers() -> None:
    home = Path(tempfile.mkdtemp(prefix="porch-demo-", dir="/tmp")) / "h"
    port = free_port()
    env = service_env(home, PORCH_PASSWORD="demo pass")
    up = subprocess.run([PY, "-m", "porch.cli", "up", "--demo", "--detach", "--home", str(home),
                         "--port", str(port)], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"Login at http://localhost:{port}" in up.stdout
        config = (home / "porch.toml").read_text()
        demo = (home / "run" / "demo.toml").read_text()
        for pid in ("hello:hello:sys", "chat:chat:sys", "echo:demo:sys"):
            assert f'id = "{pid}"' not in config, "porch.toml is not edited for a demo"
            assert f'id = "{pid}"' in demo
        assert str(REPO) not in config

        def hello_up() -> bool:
            try:
                r = requests.get(base + "/hello:hello:sys/api/hello?name=demo", timeout=5)
            except requests.RequestException:
                return False
            return r.text == "hello, demo\n"

        wait_for(hello_up, 30, 0.2, "hello's public path")
        ui = requests.get(base + "/hello:hello:sys/", timeout=5)
        assert ui.status_code == 200 and "<h1>hello</h1>" in ui.text
        css = requests.get(base + "/hello:hello:sys/style.css", timeout=5)
        assert css.headers["content-type"] == "text/css"
        assert requests.get(base + "/hello:hello:sys/api/me", timeout=5).status_code == 401
        session = requests.Session()
        assert session.post(base + "/login", json={"password": "demo pass"}, timeout=10).status_code == 200
        me = session.get(base + "/hello:hello:sys/api/me", timeout=5).json()
        assert me["bound_path"] == "/hello:hello:sys/api/me"
        wait_for(lambda: session.get(base + "/chat:chat:sys/", timeout=5).status_code == 200, 30, 0.2,
                 "the chat UI")
        assert "chat" in session.get(base + "/chat:chat:sys/", timeout=5).text
        assert session.get(base + "/chat:chat:sys/history", timeout=5).json() == []
        sent = subprocess.run([PY, "-m", "porch.cli", "send", "echo:demo:sys", "hi", "--home", str(home)],
                              capture_output=True, text=True, timeout=60, env=env)
        assert (sent.returncode, sent.stdout) == (0, "echo: hi\n"), sent.stderr
        status = subprocess.run([PY, "-m", "porch.cli", "status", "--home", str(home)],
                                capture_output=True, text=True, timeout=60, env=env)
        assert "hello:hello:sys" in status.stdout, status.stdout

        # the next start without --demo runs porch.toml's processes only
        down = subprocess.run([PY, "-m", "porch.cli", "down", "--home", str(home)],
                              capture_output=True, text=True, timeout=60, env=env)
        assert down.returncode == 0, down.stderr
        again = subprocess.run([PY, "-m", "porch.cli", "up", "--detach", "--home", str(home)],
                               capture_output=True, text=True, timeout=120, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        status = subprocess.run([PY, "-m", "porch.cli", "status", "--home", str(home)],
                                capture_output=True, text=True, timeout=60, env=env)
        assert "hello:hello:sys" not in status.stdout and "kernel" in status.stdout, status.stdout
        assert not (home / "run" / "demo.toml").exists()
    finally:
        subprocess.run([PY, "-m", "porch.cli", "down", "--home", str(home)], capture_output=True,
                       timeout=60, env=env)
        shutil.rmtree(home.parent, ignore_errors=True)

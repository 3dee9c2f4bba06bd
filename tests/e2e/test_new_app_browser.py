"""A new user's path with a browser at the end (issue 14): a node runs, `porch new notes
--ui --add`, `porch up` applies porch.toml, and the app's page works once logged in.
docs/screenshots/new-app.png comes from here (PORCH_SCREENSHOTS=1)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from support.node import PY, free_port, service_env, wait_for

PASSWORD = "new app password"

pytestmark = pytest.mark.browser


def test_the_page_of_a_new_app(browser: Any, screenshot: Callable[[Any, str], Path]) -> None:
    work = Path(tempfile.mkdtemp(prefix="porch-newb-", dir="/tmp"))
    home, port = work / "h", free_port()

    def porch(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([PY, "-m", "porch.cli", *args, "--home", str(home)], cwd=work,
                                capture_output=True, text=True, timeout=120,
                                env=service_env(home, PORCH_PASSWORD=PASSWORD))
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    try:
        porch("up", "--detach", "--port", str(port))
        porch("new", "notes", "--ui", "--add")
        assert "added notes:notes:local" in porch("up").stdout
        base = f"http://localhost:{port}"
        app = base + "/notes:notes:local"
        wait_for(lambda: requests.get(app + "/api/hello", timeout=5).status_code == 200, 30, 0.2,
                 "the new app")
        page = browser.new_context(viewport={"width": 1000, "height": 700}).new_page()
        page.goto(app)  # the login page, served at the app's URL
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("h1:has-text('notes')")
        assert page.url == app + "/"
        assert page.inner_text("#node").startswith("on porch-"), "the node's name, from /our.js"
        page.fill("#name", "new user")
        page.click("#greet button")
        page.wait_for_selector("#greeting:has-text('hello, new user')")
        for note in ("an idea", "a running app"):
            page.fill("#note", note)
            page.click("#add button")
            page.wait_for_selector(f"#notes li:has-text('{note}')")
        screenshot(page, "new-app")
        page.context.close()
    finally:
        subprocess.run([PY, "-m", "porch.cli", "down", "--home", str(home)], capture_output=True,
                       timeout=60, env=service_env(home))
        shutil.rmtree(work, ignore_errors=True)

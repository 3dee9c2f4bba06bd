"""Headless Chromium for the browser tests: Debian's package, driven by Playwright.

Playwright's own browser download cannot reach its host from these machines, so the
tests use /usr/bin/chromium (installed by .ci/run) and are skipped, with the reason,
where it is missing, except under $PORCH_REQUIRE_BROWSER=1 (set by .ci/run): there a
missing browser fails them, so CI cannot pass without the browser tests running.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module: Playwright's sync API keeps an event loop running in this thread while
    it is open, which would break every later test that calls asyncio.run()."""
    required = os.environ.get("PORCH_REQUIRE_BROWSER") == "1"
    if CHROMIUM is None:
        missing = "Debian's chromium is not installed (apt-get install chromium)"
        if required:
            pytest.fail(missing)
        pytest.skip(missing)
    try:
        import playwright.sync_api as sync_api
    except ImportError as exc:
        if required:
            pytest.fail(f"playwright is not installed: {exc}")
        pytest.skip(f"playwright is not installed: {exc}")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[Any, str], Path]:
    """Save a page's screenshot as <name>.png: into docs/screenshots/ when
    $PORCH_SCREENSHOTS=1 (how the pictures in the docs are refreshed), else into the
    test's temporary directory (taking it still checks that the page renders)."""

    def take(page: Any, name: str) -> Path:
        folder = SCREENSHOTS if os.environ.get("PORCH_SCREENSHOTS") == "1" else tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name}.png"
        page.screenshot(path=str(target), animations="disabled", caret="hide")
        return target

    return take

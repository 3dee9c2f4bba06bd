"""[http_server] event_loop (issue 12 item 4): uvloop when installed ("auto"), asyncio's
own loop on request, and a clear refusal when uvloop is required but missing."""

from __future__ import annotations

import asyncio

import pytest

from porch.http_server import loops
from porch.http_server.settings import load_settings
from porch.node.config import ConfigError


def test_the_setting_is_checked() -> None:
    assert load_settings({}).event_loop == "auto"
    assert load_settings({"event_loop": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(ConfigError, match="event_loop"):
        load_settings({"event_loop": "trio"})


def test_auto_takes_uvloop_only_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loops, "uvloop_module", lambda: None)
    assert loops.chosen("auto") == "asyncio"
    assert loops.chosen("asyncio") == "asyncio"
    with pytest.raises(ConfigError, match="not installed"):
        loops.chosen("uvloop")
    monkeypatch.setattr(loops, "uvloop_module", lambda: object())
    assert loops.chosen("auto") == "uvloop"
    assert loops.chosen("asyncio") == "asyncio"


def test_run_runs_on_the_chosen_loop() -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loops.run(which(), "asyncio").startswith("asyncio")
    if loops.uvloop_module() is not None:
        assert loops.run(which(), "auto").startswith("uvloop")

"""The house's layering (pyproject.toml [tool.importlinter]): CLI on top, then the
services (independent of each other), the stub's helpers, the stub, the node's ground,
the link, the wire; the link imports nothing of porch but the wire. Checked with
import-linter on the source tree, in-process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_every_layering_contract_is_kept(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    services = str(ROOT / "services")
    monkeypatch.chdir(services)  # where the root package is found
    monkeypatch.setattr(sys, "path", [services, *sys.path])
    code = lint_imports(config_filename=os.path.join(ROOT, "pyproject.toml"), no_cache=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "0 broken" in report

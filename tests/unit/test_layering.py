"""The house's layering (pyproject.toml [tool.importlinter]): CLI on top, then the
services (independent of each other), the stub's helpers, the stub, the node's ground,
the link, the wire; the link imports nothing of porch but the wire. Checked with
import-linter on the source tree, in-process."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_every_layering_contract_is_kept(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # import-linter configures logging and disables every logger that exists already:
    # put them back as they were, or the tests after this one see no porch log lines.
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    for logger in loggers:
        monkeypatch.setattr(logger, "disabled", logger.disabled)
        monkeypatch.setattr(logger, "level", logger.level)
        monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    services = str(ROOT / "services")
    monkeypatch.chdir(services)  # where the root package is found
    monkeypatch.setattr(sys, "path", [services, *sys.path])
    code = lint_imports(config_filename=os.path.join(ROOT, "pyproject.toml"), no_cache=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "0 broken" in report

"""Which event loop the http-server's worker runs on ([http_server] event_loop).

uvloop (libuv under asyncio's API) is optional: "auto", the default, uses it when it
is installed (`pip install porch[fast]`) and asyncio's own loop otherwise; "asyncio"
and "uvloop" choose. Everything the worker does goes through asyncio's public API
(Tornado runs on whichever loop is running), so both loops serve the same way;
bench/README.md has what uvloop changes.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from porch.node.config import ConfigError

T = TypeVar("T")


def uvloop_module() -> Any | None:
    try:
        return importlib.import_module("uvloop")
    except ImportError:
        return None


def chosen(setting: str) -> str:
    """The loop `setting` means on this machine: "asyncio" or "uvloop"."""
    if setting == "asyncio":
        return "asyncio"
    if uvloop_module() is not None:
        return "uvloop"
    if setting == "uvloop":
        raise ConfigError('[http_server] event_loop = "uvloop", but uvloop is not installed '
                          "(pip install uvloop, or porch[fast])")
    return "asyncio"


def run(main: Coroutine[Any, Any, T], setting: str) -> T:
    """asyncio.run(main) on the loop `setting` chooses."""
    if chosen(setting) == "uvloop":
        uvloop = uvloop_module()
        assert uvloop is not None
        result: T = uvloop.run(main)
        return result
    return asyncio.run(main)

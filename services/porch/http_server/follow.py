"""A member worker's bindings, kept equal to the database (docs/workers.md §3).

Only the primary worker receives binding actions; it commits each one before it
answers the app. A member checks, before it routes a request or admits an upgrade,
whether another connection committed since it last looked (`PRAGMA data_version`:
no table is read, a few µs), and if so reads the bindings again. So a binding an app
was told is saved is served by every worker from the next request on.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from porch.http_server.bindings import BindingTable
from porch.http_server.db import StateDb
from porch.http_server.state import BindingStore

log = logging.getLogger("porch.http_server")


class BindingFollower:
    def __init__(self, db: StateDb, store: BindingStore, table: BindingTable,
                 reloaded: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.store = store
        self.table = table
        self.reloaded = reloaded
        self.version = self._version()

    def _version(self) -> int:
        try:
            return int(self.db.reader().execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return -1

    def __call__(self) -> None:
        version = self._version()
        if version == self.version:
            return
        try:
            fresh = self.store.read()
        except sqlite3.Error:
            return  # serve what it has; the next request tries again
        self.version = version
        self.table.replace(fresh)
        self.reloaded()

"""One logging setup for every service: one line per event, to stdout, for supervisord."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(service: str) -> None:
    level = os.environ.get("PORCH_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {service}: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

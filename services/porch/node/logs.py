"""One logging setup for every service: one line per event, to stdout, for supervisord.

Two formats (`[logging] format` in porch.toml, docs/metrics.md):

- "text": `2026-12-01 10:24:43,123 INFO kernel: message`, as always;
- "json": one JSON object per line, `{"ts", "level", "service", "pid", "logger",
  "msg"}`, plus `request_id` on the lines about one HTTP request, the fields an
  access-log line carries, and `exc` for a traceback. Log shippers read it as is.

The request id: the http-server gives every HTTP request one and sends it to the app
(the `x-request-id` header of the IncomingHttpRequest). While an app's handler runs,
`porch.http.server` sets `REQUEST_ID`, so every line logged meanwhile (by the stub or
by the app, through a handler that `setup_logging` made) carries it: one request can be
followed from the access log into the app's log.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextvars import ContextVar
from typing import IO, Any

# The HTTP request being handled in this thread or task ("" outside one).
REQUEST_ID: ContextVar[str] = ContextVar("porch_request_id", default="")
# What the launcher tells a user process (json or text): its output is read by the
# launcher, which timestamps plain lines and passes JSON lines on.
ENV_LOG_FORMAT = "PORCH_LOG_FORMAT"
# Keys of a JSON line that a record's `fields` (extra={"fields": {...}}) cannot replace.
_CORE = ("ts", "level", "service", "pid", "logger", "msg")


def iso_time(created: float) -> str:
    """UTC, to the millisecond: 2026-12-01T10:24:43.123Z."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class RequestIdFilter(logging.Filter):
    """Gives every record a `request_id` attribute: the HTTP request being handled, or
    "" (so that a format string may name %(request_id)s)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (no newline inside: json.dumps escapes them)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": iso_time(record.created),
            "level": record.levelname,
            "service": self.service,
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "") or REQUEST_ID.get()
        if request_id:
            out["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in _CORE:
                    out[str(key)] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`<time> LEVEL service: message`, and ` [request <id>]` on a request's lines."""

    def __init__(self, service: str, timestamps: bool = True) -> None:
        prefix = "%(asctime)s " if timestamps else ""
        name = f"{service.replace('%', '%%')}: " if service else ""
        super().__init__(f"{prefix}%(levelname)s {name}%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", "") or REQUEST_ID.get()
        if request_id and "\n" not in line:
            line += f" [request {request_id}]"
        return line


def formatter(service: str, fmt: str, timestamps: bool = True) -> logging.Formatter:
    return JsonFormatter(service) if fmt == "json" else TextFormatter(service, timestamps)


def setup_logging(service: str, fmt: str = "text", *, stream: IO[str] | None = None,
                  timestamps: bool = True) -> None:
    """Every record of the process to one handler on stdout, in `fmt` ("text" or
    "json"); `service` names the process on each line ("": not at all). PORCH_LOG_LEVEL
    sets the level (default INFO)."""
    level = os.environ.get("PORCH_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter(service, fmt, timestamps))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def setup_app_logging(level: int | str = logging.INFO) -> None:
    """For a user process: log the way the node logs (porch.setup_logging). Under
    `porch up` the launcher says which format and timestamps each line; run by hand,
    text lines without a time."""
    service = os.environ.get("PORCH_PROCESS") or os.path.basename(sys.argv[0] or "app")
    if os.environ.get(ENV_LOG_FORMAT) == "json":
        setup_logging(service, "json")
    else:  # the launcher's own prefix names the process and the time
        setup_logging("", "text", timestamps=False)
    logging.getLogger().setLevel(level)

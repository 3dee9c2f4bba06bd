"""The services' log formats (porch.node.logs), issue 13 item 2: JSON lines with time,
level, service, pid and the request id; text lines as before."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest

from porch.node.config import ConfigError, parse
from porch.node.logs import REQUEST_ID, iso_time, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_time_level_service_pid_and_request_id(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("http-server", "json", stream=out)
    log = logging.getLogger("porch.test")
    log.info("plain %s", "line")
    token = REQUEST_ID.set("abc-1")
    try:
        log.warning("in a request", extra={"fields": {"status": 200, "msg": "not replaced"}})
    finally:
        REQUEST_ID.reset(token)
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # a traceback stays inside its one line
    first, second, third = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["service"] == "http-server"
    assert first["pid"] == os.getpid() and first["logger"] == "porch.test"
    assert first["msg"] == "plain line" and "request_id" not in first
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert second["request_id"] == "abc-1" and second["status"] == 200
    assert second["msg"] == "in a request"  # fields never replace the core keys
    assert "ValueError: boom" in third["exc"]


def test_text_lines_name_the_request(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("kernel", "text", stream=out)
    log = logging.getLogger("porch.test")
    log.info("before")
    token = REQUEST_ID.set("r-9")
    try:
        log.info("during")
    finally:
        REQUEST_ID.reset(token)
    before, during = out.getvalue().splitlines()
    assert before.endswith("INFO kernel: before")
    assert during.endswith("INFO kernel: during [request r-9]")


def test_iso_time_is_utc_to_the_millisecond() -> None:
    assert iso_time(0.25) == "1970-01-01T00:00:00.250Z"
    assert iso_time(1_700_000_000.999) == "2023-11-14T22:13:20.999Z"


def test_logging_and_metrics_tables() -> None:
    cfg = parse('[logging]\nformat = "json"\naccess_log = true\n[metrics]\nenabled = false\n')
    assert cfg.logging.format == "json" and cfg.logging.access_log
    assert not cfg.metrics.enabled
    default = parse("")
    assert default.logging.format == "text" and not default.logging.access_log
    assert default.metrics.enabled
    with pytest.raises(ConfigError, match=r"\[logging\].*format must be one of 'text', 'json'"):
        parse('[logging]\nformat = "xml"\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        parse("[metrics]\nenable = true\n")
    with pytest.raises(ConfigError, match=r"\[metrics\] must be a table"):
        parse("metrics = 1\n")


def test_an_apps_lines_during_a_request_carry_its_id(restore_logging: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The stub sets the request id while the handler runs; porch.setup_logging (JSON,
    as the launcher asks) puts it on every line, the stub's own too."""
    import porch
    from porch.http.server import HttpResponse, IncomingHttpRequest
    from porch.http.server import _Operations as Operations
    from porch.wire import http_pb2

    monkeypatch.setenv("PORCH_LOG_FORMAT", "json")
    monkeypatch.setenv("PORCH_PROCESS", "app:pkg:pub.os")
    porch.setup_logging()
    out = io.StringIO()
    logging.getLogger().handlers[0].setStream(out)  # type: ignore[attr-defined]

    class Proc:
        our = "app:pkg:pub.os"

        def respond(self, *args: object, **kw: object) -> bool:
            return True

    req = http_pb2.HttpServerRequest()
    req.http.method = "GET"
    req.http.url = "http://localhost/app:pkg:pub.os/x"
    req.http.headers.add(name="x-request-id", value="feed-7")
    msg = porch.Message(7, porch.HTTP_SERVER, "app:pkg:pub.os", True, req.SerializeToString(), None)

    def handler(r: IncomingHttpRequest) -> HttpResponse:
        assert r.request_id == "feed-7"
        logging.getLogger("app").info("handling")
        raise RuntimeError("boom")

    Operations(Proc(), 5, 5).handle_request(msg, handler)  # type: ignore[arg-type]
    logging.getLogger("app").info("after")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["msg"].split(";")[0], r.get("request_id")) for r in lines] == [
        ("handling", "feed-7"),
        ("app:pkg:pub.os: the HTTP handler failed on GET http://localhost/app:pkg:pub.os/x", "feed-7"),
        ("after", None)]
    assert all(r["service"] == "app:pkg:pub.os" for r in lines)

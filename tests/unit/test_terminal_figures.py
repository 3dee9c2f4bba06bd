"""The figures in the terminal (issue 13 items 2 and 4): porch status's summary, porch
top's table and sparkline, porch logs --all's interleaving."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

from porch.cli.figures import by_id, spark, summary, table
from porch.cli.logmerge import interleave, line_time, print_all, shown

VIEW = {"node": "n.os", "metrics": True, "missing": {"http-client": "Timeout"}, "processes": [
    {"id": "kernel:distro:sys", "state": "running", "uptime_s": 3725, "restarts": 0, "requests": 0,
     "rate": 0.0, "error_rate": None, "p50_ms": None, "p99_ms": None, "websockets": 0,
     "rss_bytes": 30 * 1048576, "spark": []},
    {"id": "hello:hello:sys", "state": "restarting", "uptime_s": 5, "restarts": 2, "requests": 40,
     "rate": 12.34, "error_rate": 0.025, "p50_ms": 1.25, "p99_ms": 48.0, "websockets": 3,
     "rss_bytes": None, "spark": [0, 1, 2, 4, 8]},
]}


def test_status_summary() -> None:
    rows = by_id(VIEW)
    assert summary(rows["hello:hello:sys"]) == "12.3 req/s, 2.5% err, p99 48ms, 2 restarts"
    assert summary(rows["kernel:distro:sys"]) == "- req/s, - err, p99 -, 0 restarts"
    assert by_id(None) == {}


def test_spark_scales_to_the_highest() -> None:
    assert spark([0, 1, 2, 4, 8]) == "▁▂▃▅█"
    assert spark([0, 0]) == "▁▁"
    assert spark([]) == ""
    assert len(spark(list(range(100)))) == 30


def test_top_table() -> None:
    lines = table(VIEW)
    assert lines[0].split() == ["PROCESS", "STATE", "UP", "RESTARTS", "REQ/S", "ERR", "P50", "P99",
                                "WS", "RSS", "LAST", "MINUTES"]
    assert lines[1].split() == ["kernel:distro:sys", "running", "1h02m", "0", "-", "-", "-", "-", "0", "30M"]
    assert lines[2].split() == ["hello:hello:sys", "restarting", "0m05s", "2", "12.3", "2.5%", "1.2ms",
                                "48ms", "3", "-", "▁▂▃▅█"]
    assert lines[3] == "no answer from http-client"
    coloured = table(VIEW, colour=True)
    assert "\x1b[32mrunning" in coloured[1] and "\x1b[33mrestarting" in coloured[2]


def test_line_times() -> None:
    local = time.mktime(time.strptime("2026-12-01 10:24:43", "%Y-%m-%d %H:%M:%S"))
    assert line_time(b"2026-12-01 10:24:43,123 INFO kernel: x\n") == local + 0.123
    assert line_time(b'{"ts": "1970-01-01T00:00:02.500Z", "msg": "x"}') == 2.5
    assert line_time(b"Traceback (most recent call last):") is None
    assert line_time(b"{not json") is None


def test_interleave_keeps_untimed_lines_after_their_line() -> None:
    a = [b"2026-12-01 10:00:01,000 INFO a: one\n", b"  traceback line\n", b"2026-12-01 10:00:03,000 x\n"]
    b = [b"2026-12-01 10:00:02,000 INFO b: two\n"]
    assert [(label, line.split()[-1]) for label, line in interleave({"a": a, "b": b})] == [
        ("a", b"one"), ("a", b"line"), ("b", b"two"), ("a", b"x")]
    assert shown("kernel", 8, b"x\n") == b"kernel   | x\n"
    record = b'{"ts": "1970-01-01T00:00:02.500Z", "service": "kernel"}'
    assert shown("kernel", 8, record) == record + b"\n", "JSON lines name their service"


def test_all_logs_followed(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "kernel.log").write_bytes(b"2026-12-01 10:00:02,000 INFO kernel: second\n")
    (logs / "app-a-b-c.log").write_bytes(b"2026-12-01 10:00:01,000 a:b:c: first\n")
    out = io.BytesIO()
    print_all(logs, {"app-a-b-c": "a:b:c"}, 10, follow=False, out=out)
    assert out.getvalue().splitlines() == [b"a:b:c    | 2026-12-01 10:00:01,000 a:b:c: first",
                                           b"kernel   | 2026-12-01 10:00:02,000 INFO kernel: second"]

    def later() -> None:
        time.sleep(0.3)
        with (logs / "kernel.log").open("ab") as f:
            f.write(b"2026-12-01 10:00:03,000 INFO kernel: third\n")
        (logs / "http-client.log").write_bytes(b"2026-12-01 10:00:04,000 INFO http-client: new\n")
        (logs / "app-a-b-c.log").replace(logs / "app-a-b-c.log.1")  # rotated, as supervisord does
        (logs / "app-a-b-c.log").write_bytes(b"2026-12-01 10:00:05,000 a:b:c: rotated\n")

    followed = io.BytesIO()
    writer = threading.Thread(target=later)
    writer.start()
    print_all(logs, {"app-a-b-c": "a:b:c"}, 0, follow=True, out=followed, poll_s=0.05,
              until=time.monotonic() + 1.5)
    writer.join()
    got = [" ".join(line.split()) for line in followed.getvalue().decode().splitlines()]
    assert got == ["kernel | 2026-12-01 10:00:03,000 INFO kernel: third",
                   "http-client | 2026-12-01 10:00:04,000 INFO http-client: new",
                   "a:b:c | 2026-12-01 10:00:05,000 a:b:c: rotated"], "-n 0: only new lines"


def test_json_view_round_trip() -> None:
    assert by_id(json.loads(json.dumps(VIEW)))["hello:hello:sys"]["websockets"] == 3

"""A user process's output gets timestamps (issue 13 item 2): porch.cli.relay, and the
launcher with --relay running a real command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from porch.cli.relay import MAX_LINE, Lines, json_stamp, text_stamp
from porch.node.home import NodeHome

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


def test_lines_are_stamped_when_they_end() -> None:
    lines = Lines(text_stamp("a:b:c"))
    assert lines.feed(b"one\ntw", 0.0) != b""
    out = lines.feed(b"o\r\n", 0.0) + lines.feed(b"three", 0.0) + lines.end(0.0)
    text = out.decode().splitlines()
    assert [re.sub(STAMP, "T", t) for t in text] == ["T a:b:c: two", "T a:b:c: three"]
    assert lines.end(0.0) == b""


def test_a_line_without_end_is_cut_at_the_limit() -> None:
    lines = Lines(lambda line, now: b"<" + str(len(line)).encode() + b">")
    assert lines.feed(b"x" * (MAX_LINE * 2 + 5), 0.0) == f"<{MAX_LINE}><{MAX_LINE}>".encode()
    assert lines.end(0.0) == b"<5>"


def test_json_lines_pass_and_others_are_wrapped() -> None:
    stamp = json_stamp("a:b:c", 42)
    own = b'{"ts": "x", "msg": "already json"}'
    assert stamp(own, 0.0) == own + b"\n"
    wrapped = json.loads(stamp(b"Traceback (most recent call last): \xff", 1.5))
    assert wrapped == {"ts": "1970-01-01T00:00:01.500Z", "level": "INFO", "service": "a:b:c",
                       "pid": 42, "logger": "output",
                       "msg": "Traceback (most recent call last): \ufffd"}
    assert json.loads(stamp(b"[1, 2]", 0.0))["msg"] == "[1, 2]"  # JSON, but not an object
    # An app's JSON line cannot speak for another process (`porch logs --all`).
    forged = json.loads(stamp(b'{"service": "kernel", "pid": 1, "level": "ERROR", "msg": "x"}', 0.0))
    assert forged == {"service": "a:b:c", "pid": 42, "level": "ERROR", "msg": "x"}


def _home(tmp_path: Path, source: str, fmt: str = "text") -> NodeHome:
    home = NodeHome(tmp_path / "h")
    home.ensure()
    script = tmp_path / "app.py"
    script.write_text(source)
    home.config_path.write_text(f'[logging]\nformat = "{fmt}"\n[[process]]\nid = "out:demo:sys"\n'
                                f'command = "{sys.executable} {script}"\n')
    return home


def _launch(home: NodeHome) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "porch.cli.launch", "--home", str(home.root), "--relay",
                           "out:demo:sys"], capture_output=True, text=True, timeout=30)


def test_the_launcher_stamps_what_the_process_prints_and_exits_as_it_did(tmp_path: Path) -> None:
    home = _home(tmp_path, "import os, sys\nprint('hello')\nprint('oops', file=sys.stderr)\n"
                           "print(os.environ['PORCH_LOG_FORMAT'])\nsys.exit(3)\n")
    out = _launch(home)
    assert out.returncode == 3
    lines = [re.sub(STAMP, "T", line) for line in out.stdout.splitlines()]
    assert lines == ["T out:demo:sys: hello", "T out:demo:sys: oops", "T out:demo:sys: text"]
    assert (home.run_dir / "starts" / "app-out-demo-sys").read_text() == "1\n"
    _launch(home)
    assert (home.run_dir / "starts" / "app-out-demo-sys").read_text() == "2\n"


def test_json_format_and_death_by_signal(tmp_path: Path) -> None:
    home = _home(tmp_path, "import os, signal\nprint('bye', flush=True)\n"
                           "os.kill(os.getpid(), signal.SIGTERM)\n", fmt="json")
    out = _launch(home)
    assert out.returncode == -15, "the launcher dies of the signal its process died of"
    (line,) = out.stdout.splitlines()
    record = json.loads(line)
    assert record["msg"] == "bye" and record["service"] == "out:demo:sys"

"""A user process's output, line by line, with a timestamp on each (issue 13 item 2).

supervisord writes what a program prints to its log as is: a `print()` or a traceback
of an app has no time. With `--relay`, the launcher (`porch.cli.launch`) stays as the
program's process and runs the app as its child, its stdout and stderr on a pipe; each
line goes to the log as `<time> <process id>: <line>` (or, with `[logging] format =
"json"`, a JSON object; a line that is one already, from an app logging JSON with
`porch.setup_logging`, passes as it is, unless it names another "service" or "pid":
those are set to the app's own).

The child is its own process group: a signal the launcher gets (supervisord's TERM to
stop it, HUP, ...) goes to the app's group once, and the app dies with the launcher
(PR_SET_PDEATHSIG), so a `kill -9` of either ends both. The launcher ends as its child
did: the same exit status, or the same signal.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable

from porch.node.lifetime import die_with_parent
from porch.node.logs import iso_time

CHUNK = 65536
MAX_LINE = 65536  # a longer line is written in pieces
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)


def text_stamp(process_id: str) -> Callable[[bytes, float], bytes]:
    def stamp(line: bytes, now: float) -> bytes:
        local = time.localtime(now)
        head = time.strftime("%Y-%m-%d %H:%M:%S", local) + f",{int(now * 1000) % 1000:03d} "
        return head.encode() + process_id.encode() + b": " + line + b"\n"
    return stamp


def json_stamp(process_id: str, pid: int) -> Callable[[bytes, float], bytes]:
    def stamp(line: bytes, now: float) -> bytes:
        if line.startswith(b"{"):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                if record.get("service", process_id) == process_id and record.get("pid", pid) == pid:
                    return line + b"\n"
                # An app's line may not speak for another process (`porch logs --all`
                # shows JSON lines by their own "service"): its own id and pid go in.
                record["service"], record["pid"] = process_id, pid
                return json.dumps(record, ensure_ascii=False).encode() + b"\n"
        record = {"ts": iso_time(now), "level": "INFO", "service": process_id, "pid": pid,
                  "logger": "output", "msg": line.decode("utf-8", "replace")}
        return json.dumps(record, ensure_ascii=False).encode() + b"\n"
    return stamp


class Lines:
    """Chunks in, stamped lines out; a partial line waits for its end (or MAX_LINE)."""

    def __init__(self, stamp: Callable[[bytes, float], bytes]) -> None:
        self.stamp = stamp
        self.partial = b""

    def feed(self, chunk: bytes, now: float) -> bytes:
        data = self.partial + chunk
        *lines, self.partial = data.split(b"\n")
        while len(self.partial) > MAX_LINE:
            lines.append(self.partial[:MAX_LINE])
            self.partial = self.partial[MAX_LINE:]
        return b"".join(self.stamp(line.rstrip(b"\r"), now) for line in lines)

    def end(self, now: float) -> bytes:
        rest, self.partial = self.partial, b""
        return self.stamp(rest.rstrip(b"\r"), now) if rest else b""


def run(argv: list[str], env: dict[str, str], process_id: str, fmt: str) -> int:
    """Run argv (an exec'd /bin/sh) as a child and relay its output; never returns
    normally when the child died of a signal (the launcher dies of it too)."""
    parent = os.getpid()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the app
        try:
            os.setpgid(0, 0)
            die_with_parent(signal.SIGKILL, expected_parent=parent)
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            os.close(read_end)
            os.close(write_end)
            for sig in FORWARDED:
                signal.signal(sig, signal.SIG_DFL)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    os.close(write_end)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    lines = Lines(json_stamp(process_id, pid) if fmt == "json" else text_stamp(process_id))
    out = sys.stdout.buffer
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    exited = False
    while True:
        try:
            ready = dict(poller.poll())
        except InterruptedError:
            continue
        if pidfd in ready:
            exited = True
        if read_end in ready:
            chunk = os.read(read_end, CHUNK)
            if chunk:
                out.write(lines.feed(chunk, time.time()))
                out.flush()
                continue
            break  # every writer closed: the app and whatever it started are gone
        if exited:
            # The app is gone; take what it wrote last (its children may hold the pipe
            # open: do not wait for them).
            os.set_blocking(read_end, False)
            try:
                while chunk := os.read(read_end, CHUNK):
                    out.write(lines.feed(chunk, time.time()))
            except BlockingIOError:
                pass
            break
    out.write(lines.end(time.time()))
    out.flush()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        died_of = os.WTERMSIG(status)
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), died_of)
        time.sleep(1)
        return 128 + died_of
    return os.waitstatus_to_exitcode(status)

"""`porch` mistakes a new user makes get one clear message and a non-zero exit, never a
traceback, and nothing is started (or created) on the way."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import argon2
import pytest

from porch.node.home import NodeHome
from support.node import PY, service_env


@pytest.fixture
def home() -> Iterator[Path]:
    """A node home with a valid porch.toml and nothing running."""
    root = Path(tempfile.mkdtemp(prefix="porch-cli-", dir="/tmp")) / "h"
    NodeHome(root).ensure()
    (root / "porch.toml").write_text('node = "cli.os"\n')
    try:
        yield root
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


def porch(*args: str, home: Path | None = None, timeout: float = 60,
          **env: str) -> subprocess.CompletedProcess[str]:
    full = [PY, "-m", "porch.cli", *args] + (["--home", str(home)] if home else [])
    environment = service_env(home or Path("/nonexistent"), **env)
    environment.pop("PORCH_PASSWORD", None)
    environment.update(env)
    return subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                          env=environment, stdin=subprocess.DEVNULL)


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


# ---------------------------------------------------------------------------- settings


@pytest.mark.parametrize("table, line, fragments", [
    ("http_server", "request_timeout = 5", ["[http_server]", "unknown setting(s) request_timeout"]),
    ("http_server", 'request_timeout_s = "5"', ["[http_server].request_timeout_s", "expected float"]),
    ("http_server", "request_timeout_s = -5", ["[http_server]", "request_timeout_s must be more than 0"]),
    ("http_server", "max_body_bytes = 0", ["[http_server]", "max_body_bytes must be at least 1"]),
    ("http_client", 'deny_networks = ["not-a-cidr"]', ["[http_client]", "deny_networks",
                                                        "not-a-cidr"]),
    ("http_client", "workers = 0", ["[http_client]", "workers must be at least 1"]),
    ("kernel", "request_timeout = 5", ["[kernel]", "unknown setting(s) request_timeout"]),
    ("kernel", 'max_request_timeout_s = 0', ["[kernel]", "max_request_timeout_s must be"]),
])
def test_up_checks_every_services_settings_before_starting_anything(
        home: Path, table: str, line: str, fragments: list[str]) -> None:
    (home / "porch.toml").write_text(f'node = "cli.os"\n[{table}]\n{line}\n')
    started = time.monotonic()
    result = porch("up", "--detach", "--wait", "60", home=home, PORCH_PASSWORD="pw")
    assert_clean_error(result, 2, str(home / "porch.toml"), *fragments)
    assert time.monotonic() - started < 20, "refused at once, not after the readiness wait"
    assert not (home / "run" / "supervisor.sock").exists(), "nothing was started"
    assert not (home / "run" / "supervisord.pid").exists()


@pytest.mark.parametrize(("text", "fragment"), [
    ("kernel = 3", "[kernel] must be a table"),
    ("process = 3", "process must be an array of [[process]] tables"),
])
def test_up_refuses_a_value_where_porch_toml_needs_a_table(home: Path, text: str, fragment: str) -> None:
    """Issue 16 (found by mutation testing): `kernel = 3` or `process = 3` was a
    traceback (TypeError) instead of the file's one-line error."""
    (home / "porch.toml").write_text(f'node = "cli.os"\n{text}\n')
    result = porch("up", "--detach", "--wait", "60", home=home, PORCH_PASSWORD="pw")
    assert_clean_error(result, 2, f"{home / 'porch.toml'}: {fragment}")
    assert not (home / "run" / "supervisor.sock").exists(), "nothing was started"


# ---------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("port", ["99999", "-1", "0", "http"])
def test_up_rejects_a_port_out_of_range_like_argparse(home: Path, port: str) -> None:
    result = porch("up", "--detach", "--port", port, home=home)
    assert_clean_error(result, 2, "argument --port: port must be 1-65535")
    assert not (home / "run" / "supervisor.sock").exists()


def test_send_with_a_missing_blob_file_says_so(home: Path) -> None:
    result = porch("send", "echo:demo:sys", "hi", "--blob", "/nonexistent/blob", home=home)
    assert_clean_error(result, 2, "cannot read --blob /nonexistent/blob", "No such file")


# ---------------------------------------------------------------------------- logs -n


def test_logs_n_counts_lines_from_the_end_and_refuses_negative(home: Path) -> None:
    (home / "logs" / "kernel.log").write_text("one\ntwo\nthree\n")
    assert porch("logs", "kernel", "-n", "2", home=home).stdout == "two\nthree\n"
    none = porch("logs", "kernel", "-n", "0", home=home)
    assert none.returncode == 0 and none.stdout == ""
    assert porch("logs", "kernel", home=home).stdout == "one\ntwo\nthree\n"
    negative = porch("logs", "kernel", "-n", "-1", home=home)
    assert_clean_error(negative, 2, "argument -n/--lines: must be 0 or more")
    assert negative.stdout == ""


# ---------------------------------------------------------------------------- password


def test_password_without_terminal_or_password_refuses(home: Path) -> None:
    result = porch("password", home=home)
    assert_clean_error(result, 2, "password unchanged", "--password", "$PORCH_PASSWORD",
                       "--generate")
    assert not (home / "state" / "password.argon2").exists()
    assert "shown only this once" not in result.stdout


def test_password_generate_prints_the_new_one_once(home: Path) -> None:
    result = porch("password", "--generate", home=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("node password (shown only this once): ") == 1
    assert (home / "state" / "password.argon2").exists()
    both = porch("password", "--generate", "--password", "x", home=home)
    assert_clean_error(both, 2, "not allowed with argument")


def test_password_from_the_environment_needs_no_terminal(home: Path) -> None:
    result = porch("password", home=home, PORCH_PASSWORD="from env")
    assert result.returncode == 0, result.stderr
    assert "from env" not in result.stdout
    stored = (home / "state" / "password.argon2").read_text().strip()
    assert argon2.PasswordHasher().verify(stored, "from env"), "the environment's password is set"


def test_password_for_a_mistyped_home_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    result = porch("password", "--password", "x", home=typo)
    assert_clean_error(result, 2, f"no node home at {typo}")
    assert not typo.exists()


# ---------------------------------------------------------------------------- send


def test_send_to_an_invalid_process_id_says_so(home: Path) -> None:
    result = porch("send", "bad", "hi", home=home)
    assert_clean_error(result, 2, "invalid process id", "'bad'")


def test_send_without_a_node_fails_at_once(home: Path) -> None:
    started = time.monotonic()
    result = porch("send", "echo:demo:sys", "hi", "--connect-timeout", "30", home=home)
    assert_clean_error(result, 3, f"no node running at {home}")
    assert time.monotonic() - started < 10, "no wait for the connect timeout"


# ---------------------------------------------------------------------------- help


def test_help_describes_commands_arguments_and_defaults() -> None:
    def helptext(*args: str) -> str:
        out = porch(*args, "--help")
        assert out.returncode == 0, out.stderr
        return " ".join(out.stdout.split())  # argparse wraps lines

    for command in ("status", "down", "restart", "logs"):
        blocks = porch(command, "--help").stdout.split("\n\n")
        assert not blocks[1].startswith(("positional arguments:", "options:")), \
            f"`porch {command} --help` has no description"
    logs = helptext("logs")
    assert "SERVICE kernel, http-server" in logs
    assert "-f, --follow keep printing" in logs and "-n N, --lines N print the last N" in logs
    assert "SERVICE kernel, http-server" in helptext("restart")
    send = helptext("send")
    assert "PROCESS the target's process id" in send and "BODY the request body" in send
    assert "--connect-timeout CONNECT_TIMEOUT seconds to wait" in send
    assert "(default 60)" in helptext("up")
    version = porch("--version")
    assert version.returncode == 0 and version.stdout.startswith("porch ")


# ---------------------------------------------------------------------------- supervisord login


def test_supervisord_config_holds_a_per_home_login_in_private_files(tmp_path: Path) -> None:
    from porch.cli import supervise
    from porch.node.config import parse

    homes = [NodeHome(tmp_path / name) for name in ("a", "b")]
    for h in homes:
        h.ensure()
        supervise.write(h, parse(""), foreground=True)
    logins = [supervise.credentials(h) for h in homes]
    assert logins[0] and logins[1] and logins[0] != logins[1], "one login per home"
    for h, login in zip(homes, logins, strict=True):
        assert login is not None
        text = h.supervisord_conf.read_text()
        server = text.split("[unix_http_server]", 1)[1].split("[supervisord]", 1)[0]
        ctl = text.split("[supervisorctl]", 1)[1]
        for section in (server, ctl):
            assert f"username={login[0]}" in section and f"password={login[1]}" in section
        for path in (h.supervisor_secret, h.supervisord_conf):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # rendering again keeps the login (a running supervisord knows only the first)
    supervise.write(homes[0], parse(""), foreground=False)
    assert supervise.credentials(homes[0]) == logins[0]
    assert os.stat(homes[0].supervisord_conf).st_mode & 0o077 == 0

"""The `porch` command: run a node and operate it.

    porch up [--home H] [--node N] [--port P] [--demo] [--detach]   (again: apply porch.toml)
    porch status | down | restart SERVICE... | logs SERVICE [-f] [-n N]
    porch send PROCESS BODY [--timeout S]
    porch password [--password P | --generate]
    porch new NAME [--ui] [--async] [--add]          (a ready app directory)
    porch dev APP_DIR                              (restart an app when its files change)
    porch rpc-token                                (the RPC endpoint's credential)
    porch keys new ID | list | revoke ID           (processes on other machines)
    porch kernel | http-server | http-client      (the services themselves)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from porch.cli import figures as node_figures
from porch.cli import foreground, logmerge, procinfo, supervise
from porch.cli import keys as keys_cli
from porch.files import remove_leftovers
from porch.http_server.port import read_port
from porch.node import config as node_config
from porch.node import listen_socket, service_token, starts
from porch.node.home import NodeHome

DEMO_APPS = (
    # (process id, path below examples/, capabilities)
    ("hello:hello:sys", "hello/app.py", ("http-server:distro:sys",)),
    ("chat:chat:sys", "chat/app.py", ("http-server:distro:sys",)),
    ("echo:demo:sys", "echo/app.py", ()),
)


def _home_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        help="node home directory (default: $PORCH_HOME, else ~/.porch)",
    )


def _fail(message: str, code: int = 1) -> int:
    print(f"porch: {message}", file=sys.stderr)
    return code


def _argument(parse: Callable[[str], Any], ok: Callable[[Any], bool], rule: str) -> Callable[[str], Any]:
    """An argparse type: `parse` the text, then require `ok`; else "<rule>, got <text>"."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{rule}, got {text!r}") from None
        if not ok(value):  # `not ok` also refuses nan
            raise argparse.ArgumentTypeError(f"{rule}, got {text}")
        return value

    return convert


port_number = _argument(int, lambda p: 1 <= p <= 65535, "port must be 1-65535")
count = _argument(int, lambda n: n >= 0, "must be 0 or more")
seconds = _argument(float, lambda s: s >= 0, "must be 0 or more seconds")


def find_examples() -> Path | None:
    """examples/ in the current directory, else beside the source tree (editable install)."""
    for candidate in (Path.cwd() / "examples", Path(__file__).resolve().parents[3] / "examples"):
        if candidate.is_dir():
            return candidate
    return None


def demo_processes(existing: Sequence[str]) -> list[node_config.ProcessSpec]:
    examples = find_examples()
    if examples is None:
        raise FileNotFoundError(
            "--demo needs the examples/ directory of a porch checkout: run from the checkout"
        )
    specs = []
    for pid, rel, caps in DEMO_APPS:
        script = examples / rel
        if pid in existing or not script.exists():
            continue
        specs.append(node_config.ProcessSpec(
            id=pid,
            command=f"{sys.executable} {script}",
            directory=str(script.parent),
            capabilities=caps,
        ))
    return specs


# ---------------------------------------------------------------------------- config


def load_checked(home: NodeHome) -> node_config.NodeConfig:
    """porch.toml with every service's settings checked as the service itself will check
    them when it starts: a mistake fails the command (naming file, table and key)
    instead of a service that supervisord restarts until it gives up."""
    from porch.http_client.settings import load_settings as http_client_settings
    from porch.http_server.settings import load_settings as http_server_settings

    config = node_config.load_home(home)  # node name, [kernel], [[process]] (+ run/demo.toml)
    where = str(home.config_path)
    http_server_settings(config.http_server, f"{where} [http_server]")
    http_client_settings(config.http_client, f"{where} [http_client]")
    for spec in config.processes:
        # supervisord could not even spawn it ("couldn't chdir"): say so before starting
        if spec.command and spec.directory and not (home.root / spec.directory).is_dir():
            raise node_config.ConfigError(f"{where} [[process]] {spec.id}: directory "
                                          f"{spec.directory!r} does not exist")
    return config


# ---------------------------------------------------------------------------- up / down


def cmd_up(args: argparse.Namespace) -> int:
    home = NodeHome.resolve(args.home)
    try:
        home.ensure()
    except ValueError as exc:
        return _fail(str(exc), 2)
    sup = supervise.Supervisor(home)
    running = sup.running()
    try:
        prepare_config(home, args)
        prepare_demo(home, args.demo, running)
        config = load_checked(home)
    except (node_config.ConfigError, FileNotFoundError) as exc:
        return _fail(str(exc), 2)
    try:
        # Socket activation (deploy/porch.socket): systemd holds the port, we hold a copy
        # for the keeper, which outlives any crash of it (issue 10 item 5).
        activated = listen_socket.from_systemd()
    except (OSError, listen_socket.NotAListeningSocket) as exc:
        return _fail(f"the socket systemd passed (LISTEN_FDS) is unusable: {exc}", 2)
    if running:
        if activated is not None:
            activated.close()
        return apply_config(home, config, sup, args)
    if activated is None:
        problem = check_port(home, config, args)
        if problem:
            return _fail(problem, 2)
    elif args.detach:
        return _fail("a socket passed by systemd (LISTEN_FDS) is held by `porch up` while it "
                     "runs: run it in the foreground (without --detach)", 2)
    try:
        setup_password(home, args, generate_unasked=True)
    except (ValueError, KeyboardInterrupt) as exc:
        return _fail(f"no password set: {exc}", 2)
    extra = service_args(args)
    remove_leftovers(home.run_dir)  # of writes a crash interrupted (the services clean state/)
    service_token.renew(home)  # this start's: only the services it starts read it
    starts.reset(home)  # restarts are counted from this start of the node
    conf = supervise.write(home, config, foreground=not args.detach, extra_args=extra)
    supervise.Applied(not args.detach, extra, supervise.fingerprints(config)).write(home)
    cmd = [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)]
    print(f"porch: node {config.node} in {home.root}")
    if args.detach:
        rc = subprocess.call(cmd)
        if rc != 0:
            return _fail(f"supervisord failed to start (exit {rc}); see {home.logs_dir}")
        if not report_ready(home, sup, config, args.wait):
            return 1
        print_hints(config)
        return 0
    holder = None
    if activated is not None:
        from porch.http_server.port import remember

        remember(home.state_dir / "port", activated.getsockname()[1])
        holder = listen_socket.Holder(activated, listen_socket.holder_path(home))
    proc = subprocess.Popen(cmd)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    try:
        ready = report_ready(home, sup, config, args.wait, alive=lambda: proc.poll() is None,
                             foreground=True)
        # supervisord is silent here: say what fails from now on (from its log). The
        # follower starts where the log ends now, before the hints say the node runs: a
        # process that dies right after them is said too.
        follower = foreground.Follower(supervise.display_names(config), home.logs_dir)
        if ready:
            print_hints(config, foreground=True)
        now = time.monotonic()
        for info in _processes(sup):  # already said by report_ready
            if info["statename"] not in ("RUNNING", "STOPPED"):
                follower.quiet(info["name"], now)
        follower.run(alive=lambda: proc.poll() is None)
        rc = proc.wait()
    except KeyboardInterrupt:
        # The terminal sent SIGINT to supervisord too; it stops every program cleanly.
        print("\nporch: stopping the node...", file=sys.stderr, flush=True)
        try:
            rc = proc.wait(timeout=30)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            proc.terminate()
            rc = proc.wait()
    finally:
        if holder is not None:
            holder.close()
    print("porch: node stopped" + (f" (supervisord exit {rc}; see {home.logs_dir / 'supervisord.log'})"
                                   if rc else ""), file=sys.stderr, flush=True)
    return rc


def _processes(sup: supervise.Supervisor) -> list[dict[str, Any]]:
    try:
        return sup.processes()
    except (OSError, xmlrpc.client.Error):
        return []


def print_hints(config: node_config.NodeConfig, foreground: bool = False) -> None:
    """What to try next. The `porch` of another shell is not this one's when a
    virtualenv is active only here: name this one by its full path."""
    if any(p.id == "echo:demo:sys" for p in config.processes):
        print(f"porch: try it from another shell: {porch_command()} send echo:demo:sys hi")
    if foreground:
        print("porch: Ctrl-C stops the node", flush=True)


def porch_command() -> str:
    """How to run this very porch from any shell: `porch` when that is the one on PATH,
    else its full path (a virtualenv's bin/porch), else `python -m porch.cli`."""
    import shlex
    import shutil

    beside = Path(sys.executable).parent / "porch"
    on_path = shutil.which("porch")
    if beside.exists():
        if on_path and Path(on_path).resolve() == beside.resolve() and not os.environ.get("VIRTUAL_ENV"):
            return "porch"
        return shlex.quote(str(beside))
    return f"{shlex.quote(sys.executable)} -m porch.cli"


def prepare_config(home: NodeHome, args: argparse.Namespace) -> None:
    """Write porch.toml on first start."""
    path = home.config_path
    if not path.exists():
        node = args.node or node_config.default_node_name(home)
        path.write_text(node_config.render(node, []))
        print(f"porch: created {path} for node {node}")
        return
    config = node_config.load(path)
    if args.node and args.node != config.node:
        raise node_config.ConfigError(
            f"this home belongs to node {config.node!r}; the name is fixed at creation "
            f"(edit {path} to change it, or use another --home)"
        )


def prepare_demo(home: NodeHome, demo: bool, running: bool) -> None:
    """--demo: the example apps run with the node, from run/demo.toml, for this run
    only (porch.toml is not touched, so no path into a checkout stays in it). A start
    without --demo forgets them; on a running node they stay until it stops."""
    if demo:
        declared = [p.id for p in node_config.load(home.config_path).processes]
        specs = demo_processes(declared)
        home.demo_config.write_text(
            "# The demo apps of `porch up --demo`, for this run only (porch.toml is not edited).\n\n"
            + "".join(node_config.render_process(spec) for spec in specs))
        if specs:
            print(f"porch: the demo apps run with this node: {', '.join(s.id for s in specs)} "
                  "(for this run; porch.toml is not edited)")
    elif not running:
        home.demo_config.unlink(missing_ok=True)


def apply_config(home: NodeHome, config: node_config.NodeConfig, sup: supervise.Supervisor,
                 args: argparse.Namespace) -> int:
    """`porch up` on a running node: supervisord rereads its config (programs added to
    porch.toml start, removed ones stop, changed ones are replaced), and the programs
    whose part of porch.toml changed since they started are restarted. The rest keeps
    running untouched."""
    applied = supervise.Applied.read(home)
    if applied is None:  # a node started by an older porch: assume no overrides
        applied = supervise.Applied(False, service_args(args), {})
    wanted = service_args(args).get("http-server")
    if wanted is not None and wanted != applied.extra_args.get("http-server"):
        return _fail("--port and --host apply when the node starts, and it is running: "
                     f"`porch down --home {home.root}`, then `porch up` with them", 2)
    print(f"porch: node {config.node} is running in {home.root}; applying {home.config_path}")
    supervise.write(home, config, foreground=applied.foreground, extra_args=applied.extra_args)
    fresh = supervise.fingerprints(config)
    programs = dict(applied.programs)
    rc = 0
    restarted = []
    if applied.programs.get("kernel") not in (None, fresh["kernel"]):
        # first, so that added processes register under the new grants
        if _restart(sup, "kernel", "kernel", "its part of porch.toml changed"):
            restarted.append("kernel")
            programs["kernel"] = fresh["kernel"]
        else:
            rc = 1
    try:
        added, changed, removed = sup.update()
    except xmlrpc.client.Fault as exc:
        return _fail(f"supervisord could not apply the config: {exc.faultString}")
    names = supervise.display_names(config)
    for program in removed:
        gone = applied.programs.get(program)
        print(f"porch: removed {gone.get('id', program) if isinstance(gone, dict) else program}"
              " (stopped)")
    for program in changed:
        print(f"porch: restarted {names.get(program, program)} (its program changed)")
    for program in added:
        print(f"porch: added {names.get(program, program)}")
    for program in removed:
        programs.pop(program, None)
    replaced = set(added) | set(changed)
    states = {i["name"]: i["statename"] for i in sup.processes()}
    for program in sorted(fresh):
        before = programs.get(program)
        if program in replaced or before is None:  # just started, or not known: as is
            programs[program] = fresh[program]
            continue
        if before == fresh[program] or program == "kernel":  # the kernel: done above
            continue
        if program not in supervise.SERVICES and states.get(program) in ("STOPPED", "STOPPING"):
            programs[program] = fresh[program]  # reads it when someone starts it
            continue
        if not _restart(sup, program, names.get(program, program), "its part of porch.toml changed"):
            rc = 1
            continue
        programs[program] = fresh[program]
        restarted.append(program)
        if program == "http-server":
            was, now = before.get("settings", {}), fresh[program].get("settings", {})
            if any(was.get(k) != now.get(k) for k in ("host", "port")):
                print("porch: [http_server] host and port apply when the node starts: "
                      "`porch down`, then `porch up`")
    supervise.Applied(applied.foreground, applied.extra_args, programs).write(home)
    if not (replaced or removed or restarted) and rc == 0:
        print("porch: nothing changed")
    ready = report_ready(home, sup, config, args.wait)
    return rc if ready else 1


def check_port(home: NodeHome, config: node_config.NodeConfig, args: argparse.Namespace) -> str | None:
    """Fail `porch up` itself (clear message, non-zero exit) when the port is busy,
    instead of a service that supervisord keeps restarting."""
    from porch.http_server.port import PortBusy, probe

    host = args.host or str(config.http_server.get("host", "0.0.0.0"))
    requested = args.port if args.port is not None else int(config.http_server.get("port", 0))
    try:
        probe(host, requested, home.state_dir / "port").close()
    except PortBusy as exc:
        return f"error: {exc}"
    except OSError as exc:
        return f"error: cannot listen on {host}: {exc}"
    return None


MIN_PASSWORD = 8


def password_problem(password: str) -> str | None:
    """Why a chosen node password is refused (it guards every app of the node, from
    anywhere the port is reachable), or None."""
    if len(password) < MIN_PASSWORD:
        return (f"the password must be at least {MIN_PASSWORD} characters long (it has "
                f"{len(password)}); or let porch generate one")
    return None


def ask_password() -> str:
    """At a terminal: a password typed twice, or "" (Enter) for a generated one."""
    import getpass

    for _ in range(3):
        password = getpass.getpass(f"Choose a password for the node (at least {MIN_PASSWORD} "
                                   "characters; Enter to generate one): ")
        if not password:
            return ""
        problem = password_problem(password)
        if problem:
            print(f"porch: {problem}", file=sys.stderr)
            continue
        if getpass.getpass("Repeat it: ") != password:
            raise ValueError("the two passwords differ")
        return password
    raise ValueError(f"no password of at least {MIN_PASSWORD} characters given")


def setup_password(home: NodeHome, args: argparse.Namespace, *, generate_unasked: bool) -> None:
    """Set the node password unless it is set (or args.force): --password,
    $PORCH_PASSWORD, else asked at a terminal (Enter generates one). With no terminal
    one is generated only when generate_unasked (the first `porch up`) or
    args.generate; it is shown once. A chosen one shorter than MIN_PASSWORD is
    refused."""
    from porch.http_server.state import NodeSecrets, generate_password

    secrets_ = NodeSecrets(home.state_dir)
    if secrets_.has_password() and not getattr(args, "force", False):
        return
    password = None
    if not getattr(args, "generate", False):
        given = args.password or os.environ.get("PORCH_PASSWORD")
        if given:
            problem = password_problem(given)
            if problem:
                source = "--password" if args.password else "$PORCH_PASSWORD"
                raise ValueError(f"{source}: {problem}")
            password = given
        elif sys.stdin.isatty():
            password = ask_password()
        elif not generate_unasked:
            raise ValueError("no password given and no terminal to ask for one: use "
                             "--password or $PORCH_PASSWORD, or --generate to have one made "
                             "and shown")
    generated = not password
    if not password:
        password = generate_password()
    secrets_.set_password(password)
    if generated:
        print(f"porch: node password (shown only this once): {password}")


def cmd_password(args: argparse.Namespace) -> int:
    """Change the node password; everyone is logged out: every session is ended (in the
    server's database, at once) and the JWT secret changes."""
    import sqlite3

    from porch.http_server.sessions import open_sessions
    from porch.http_server.state import NodeSecrets

    home = NodeHome.resolve(args.home)
    if not home.exists():
        return _fail(f"no node home at {home.root} (no porch.toml there); "
                     "`porch up` creates one, or give --home", 2)
    home.ensure()
    args.force = True
    try:
        setup_password(home, args, generate_unasked=False)
    except (ValueError, KeyboardInterrupt) as exc:
        return _fail(f"password unchanged: {exc}", 2)
    NodeSecrets(home.state_dir).jwt_path.unlink(missing_ok=True)
    try:
        sessions = open_sessions(home.state_dir)
        try:
            sessions.revoke_all()
        finally:
            sessions.close()
        print("porch: password changed; every session is logged out")
        ended = True
    except (sqlite3.Error, OSError) as exc:
        # The restart below still logs everyone out: the new JWT secret.
        _fail(f"password changed, but the sessions could not be ended: {exc}")
        ended = False
    sup = supervise.Supervisor(home)
    if sup.running():
        try:
            sup.restart("http-server")
        except xmlrpc.client.Fault as exc:
            return _fail(f"could not restart http-server: {exc.faultString}; "
                         "`porch restart http-server` applies the new password")
        print("porch: restarted http-server")
    return 0 if ended else 1


def cmd_rpc_token(args: argparse.Namespace) -> int:
    """Print the node's RPC token (made now if the node never ran)."""
    from porch.http_server.rpc_auth import TOKEN_FILE

    return _print_token(args, TOKEN_FILE, "RPC")


def cmd_metrics_token(args: argparse.Namespace) -> int:
    """Print the node's metrics token (made now if the node never ran)."""
    from porch.http_server.scrape import TOKEN_FILE

    return _print_token(args, TOKEN_FILE, "metrics")


def _print_token(args: argparse.Namespace, name: str, what: str) -> int:
    """A token of the home's state/ (0600), made now if the node never made it."""
    from porch.http_server.rpc_auth import RpcToken

    home = NodeHome.resolve(args.home)
    if not home.exists():
        return _fail(f"no node home at {home.root} (no porch.toml there); "
                     "`porch up` creates one, or give --home", 2)
    home.ensure()
    try:
        token = RpcToken(home.state_dir, name).get()
    except OSError as exc:
        return _fail(f"cannot read or create the {what} token: {exc}")
    print(token)
    return 0


def service_args(args: argparse.Namespace) -> dict[str, list[str]]:
    extra: dict[str, list[str]] = {}
    http: list[str] = []
    if args.port is not None:
        http += ["--port", str(args.port)]
    if getattr(args, "host", None):
        http += ["--host", args.host]
    if http:
        extra["http-server"] = http
    return extra


# supervisord's uptimes are whole seconds: 3 means at least 2 s of running before
# porch up calls a started program up (supervisord's own startsecs is 1 s).
SETTLE_S = 3
FAILED = ("FATAL", "BACKOFF", "EXITED")
# After supervisord says every program runs: how long `porch up` waits for them to
# connect to the kernel (a command that is not a porch process never does).
REGISTER_WAIT_S = 15.0
SERVICE_IDS = {"http-server": "http-server:distro:sys", "http-client": "http-client:distro:sys"}


def report_ready(home: NodeHome, sup: supervise.Supervisor, config: node_config.NodeConfig,
                 wait: float, alive: Callable[[], bool] = lambda: True,
                 foreground: bool = False) -> bool:
    """Wait until every autostart program runs; print the login URL. On failure or
    timeout, say which programs are not running, why (their log's last lines), and
    that the node is still up. False on failure."""
    give_up = time.monotonic() + wait
    infos: list[dict[str, Any]] = []
    running: dict[str, int] = {}  # program -> the pid it was first seen running with
    while alive():
        if sup.running():
            infos = sup.processes()
            for info in infos:  # seen running, then with another pid or starting again: it exited
                pid = running.setdefault(info["name"], info["pid"]) if info["statename"] == "RUNNING" \
                    else running.get(info["name"])
                if pid is not None and (info["pid"] != pid or info["statename"] == "STARTING"):
                    info["statename"] = "EXITED"
            # STOPPED: autostart = false; everything else must be running, and for
            # SETTLE_S: a process that dies a moment after supervisord's startsecs (1 s;
            # a slow start on a loaded machine) is a failure to start too.
            if infos and all(i["statename"] in ("RUNNING", "STOPPED") for i in infos) and not any(
                    i["statename"] == "RUNNING" and i["now"] - i["start"] < SETTLE_S for i in infos):
                port = read_port(home.state_dir / "port")
                if port is not None:
                    await_registered(home, config, infos, min(REGISTER_WAIT_S, give_up - time.monotonic()))
                    print(f"porch: Login at http://localhost:{port}", flush=True)
                    return True
            # BACKOFF: it exited within startsecs, so it failed to start; EXITED: soon
            # after. supervisord retries it, but what it printed will not change: say it now.
            if any(i["statename"] in FAILED for i in infos):
                not_running(home, config, infos, "failed to start", foreground)
                return False
        if time.monotonic() >= give_up:
            break
        time.sleep(0.2)
    if alive():
        not_running(home, config, infos, f"the node is not ready after {wait:g} s", foreground)
    return False


def await_registered(home: NodeHome, config: node_config.NodeConfig, infos: list[dict[str, Any]],
                     wait: float) -> None:
    """Wait (at most `wait` s) until every running program's process is registered with
    the kernel: supervisord's RUNNING says a process was started, not that it answers,
    and a request sent at once would find it Offline (a `porch send` or `curl` right
    after `porch up`). Those that do not connect in time are named, not waited for."""
    from porch import PorchError, Process

    running = {i["name"] for i in infos if i["statename"] == "RUNNING"}
    expected = {pid for name, pid in SERVICE_IDS.items() if name in running}
    expected |= {p.id for p in config.processes if p.command and p.program_name in running}
    missing = set(expected)
    give_up = time.monotonic() + max(0.0, wait)
    try:
        with Process(f"up-{os.getpid()}:terminal:sys", home=home.root, connect_timeout=max(1.0, wait)) as proc:
            while True:
                missing = expected - {e.process_id for e in proc.registry().entries}
                if not missing or time.monotonic() >= give_up:
                    break
                time.sleep(0.1)
    except PorchError as exc:
        print(f"porch: warning: the kernel did not answer ({exc})", file=sys.stderr, flush=True)
        return
    if missing:
        print("porch: warning: running but not connected to the kernel yet: " + ", ".join(sorted(missing)),
              file=sys.stderr, flush=True)


def not_running(home: NodeHome, config: node_config.NodeConfig, infos: list[dict[str, Any]],
                headline: str, foreground: bool) -> None:
    names = supervise.display_names(config)
    out = [f"porch: {headline}:"]
    waiting = [i for i in infos if i["statename"] not in ("RUNNING", "STOPPED")]
    failed = [i for i in waiting if i["statename"] in FAILED]
    waiting = failed or waiting  # what failed, not what is still on its way up
    if not infos:
        out.append("  supervisord is not answering yet; "
                   f"see {home.logs_dir / 'supervisord.log'}")
    elif not waiting:
        out.append(f"  http-server runs but has not chosen its port yet ({home.state_dir / 'port'})")
    for info in waiting:
        name = names.get(info["name"], info["name"])
        if info["statename"] == "BACKOFF":
            out.append(f"  {name} exited as it started (BACKOFF: supervisord retries it a while)")
        elif info["statename"] == "EXITED":
            out.append(f"  {name} exited soon after it started (supervisord starts it again)")
        else:
            out.append(f"  {name} is {info['statename']}" + (f" ({info['description']})"
                                                              if info.get("description") else ""))
        tail = log_tail(home, info["name"], 5)
        if tail:
            out.append(f"    last lines of {home.logs_dir / (info['name'] + '.log')}:")
            out.extend("    | " + line for line in tail)
    logs = names.get(waiting[0]["name"], waiting[0]["name"]) if waiting else "supervisord"
    if foreground:
        out.append(f"porch: the node keeps running: `porch status` shows it, `porch logs {logs}` "
                   "tells more, Ctrl-C here (or `porch down`) stops it")
    else:
        out.append(f"porch: the node was left running: `porch status` shows it, `porch logs "
                   f"{logs}` tells more, `porch down --home {home.root}` stops it")
    print("\n".join(out), file=sys.stderr, flush=True)


def log_tail(home: NodeHome, program: str, lines: int) -> list[str]:
    return foreground.log_tail(home.logs_dir / f"{program}.log", lines)


def cmd_down(args: argparse.Namespace) -> int:
    home = NodeHome.resolve(args.home)
    sup = supervise.Supervisor(home)
    if not sup.running():
        return _fail(f"no node is running in {home.root}", 3)
    pid_text = home.supervisord_pid.read_text().strip() if home.supervisord_pid.exists() else ""
    sup.shutdown()
    if pid_text.isdigit():
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up:
            try:
                os.kill(int(pid_text), 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    print("porch: node stopped")
    return 0


# ---------------------------------------------------------------------------- operate


def cmd_status(args: argparse.Namespace) -> int:
    home = NodeHome.resolve(args.home)
    sup = supervise.Supervisor(home)
    if not sup.running():
        print(f"porch: no node is running in {home.root}")
        return 3
    config: node_config.NodeConfig | None = None
    try:
        config = node_config.load_home(home)  # names and ids, even if a table is wrong
        load_checked(home)
    except node_config.ConfigError as exc:
        print(f"porch: warning: {exc}", file=sys.stderr)
    names = supervise.display_names(config) if config else {}
    infos = sup.processes()
    # The node's figures (rate, errors, p99, restarts), when the http-server gives them.
    figures: dict[str, dict[str, Any]] = {}
    if any(i["name"] == "http-server" and i["statename"] == "RUNNING" for i in infos):
        view, problem = node_figures.fetch_view(home)
        figures = node_figures.by_id(view)
        if view is None:
            print(f"porch: warning: no figures: {problem}", file=sys.stderr)
    ids = {"kernel": "kernel:distro:sys", "http-server": "http-server:distro:sys",
           "http-client": "http-client:distro:sys"}

    def described(info: dict[str, Any]) -> str:
        shown = figures.get(ids.get(info["name"]) or names.get(info["name"], info["name"]))
        return (node_figures.summary(shown) + "; " if shown else "") + _describe(info)

    rows = [(names.get(i["name"], i["name"]), i["statename"], described(i)) for i in infos]
    if config:
        running = {i["name"] for i in infos}
        rows += [(p.id, "-", "not in the running node: `porch up` applies porch.toml")
                 for p in config.processes if p.command and p.program_name not in running]
    port = read_port(home.state_dir / "port")
    print(f"node {config.node if config else '?'}  home {home.root}")
    warning = None
    if port is not None:
        state = ""
        if any(i["name"] == "http-server" and i["statename"] == "RUNNING" for i in infos):
            state, warning = state_of(port)
        print(f"http  http://localhost:{port}" + (f"  {state}" if state else ""))
    width = max([len(r[0]) for r in rows] + [16])
    for name, state, description in rows:
        print(f"  {name:<{width}} {state:<9} {description}")
    if config and (config.kernel.listen or config.remote_keys()):
        print_remote(home, config)
    if warning:
        print(f"porch: warning: {warning}", file=sys.stderr)
    return 0


def state_of(port: int) -> tuple[str, str | None]:
    """Whether the http-server can write the node's state, from its local /status (a
    full or read-only disk does not stop it, but binds and logins are refused
    meanwhile): (a few words for the http line, a warning or None)."""
    import json
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/http-server:distro:sys/status",
                                     headers={"Host": f"localhost:{port}"})
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with direct.open(request, timeout=3) as answer:
            status = json.loads(answer.read())
    except (OSError, ValueError) as exc:
        return "state unknown", f"the http-server's /status did not answer: {exc}"
    if not isinstance(status, dict) or "state_writable" not in status:
        return "state unknown", None
    if status["state_writable"]:
        return "state writable", None
    since = status.get("state_error_since")
    return f"state NOT WRITABLE since {since}", (
        f"the node's state cannot be written since {since}: {status.get('state_error')}. "
        "The http-server serves what was saved; binds and logins are refused until the disk "
        "can be written again (`porch logs http-server`)")


def print_remote(home: NodeHome, config: node_config.NodeConfig) -> None:
    """Processes on other machines: not supervised here, so the kernel says what it
    knows of them (connected since, address, last heartbeat)."""
    from porch import PorchError, Process

    print(f"remote processes (listen {config.kernel.listen or '-'}; docs/remote.md):")
    entries = {}
    try:
        with Process(f"status-{os.getpid()}:terminal:sys", home=home.root,
                     connect_timeout=3) as proc:
            entries = {e.process_id: e for e in proc.registry().entries if e.address}
    except PorchError as exc:
        print(f"  (the kernel did not answer: {exc})")
        return
    now = time.time()
    ids = sorted(set(config.remote_keys()) | set(entries))
    if not ids:
        print("  none declared ([[process]] with a key: `porch keys new ID`)")
    width = max([len(i) for i in ids] + [16])
    for pid in ids:
        e = entries.get(pid)
        if e is None:
            print(f"  {pid:<{width}} {'-':<9} not connected")
            continue
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.connected_at))
        print(f"  {pid:<{width}} {'CONNECTED':<9} from {e.address}, connected since {since} "
              f"({procinfo.hms(max(0.0, now - e.connected_at))}), last heartbeat "
              f"{max(0.0, now - e.last_heartbeat):.1f} s ago")


def _describe(info: dict[str, Any]) -> str:
    """supervisord's description; for the http-server, its worker too (the keeper's pid
    stays the same across `porch restart http-server`, the worker's does not)."""
    description = str(info["description"])
    if info["name"] == "http-server" and info["statename"] == "RUNNING" and info.get("pid"):
        for worker in procinfo.children(int(info["pid"])):
            up = procinfo.uptime_s(worker)
            if up is not None:
                description += f"; worker pid {worker}, uptime {procinfo.hms(up)}"
    return description


def cmd_restart(args: argparse.Namespace) -> int:
    home = NodeHome.resolve(args.home)
    sup = supervise.Supervisor(home)
    if not sup.running():
        return _fail(f"no node is running in {home.root}; `porch up`", 3)
    try:
        config = load_checked(home)
    except node_config.ConfigError as exc:
        return _fail(f"{exc}\nporch: nothing restarted: a service would not start with "
                     "this porch.toml; fix it first", 2)
    try:
        programs = [supervise.program_name(config, name) for name in args.services]
    except KeyError as exc:
        return _fail(str(exc.args[0]), 2)
    names = supervise.display_names(config)
    running = {i["name"] for i in sup.processes()}
    for program in programs:
        if program not in running:
            return _fail(f"{names.get(program, program)} is in porch.toml but not in the running "
                         "node (added since it started): `porch up` applies porch.toml", 2)
    applied = supervise.Applied.read(home)
    fresh = supervise.fingerprints(config)
    rc = 0
    for program in programs:
        if not _restart(sup, program, names.get(program, program)):
            rc = 1
            continue
        if applied is not None and program in fresh:
            applied.programs[program] = fresh[program]
    if applied is not None:
        applied.write(home)
    return rc


def _restart(sup: supervise.Supervisor, program: str, name: str, why: str = "") -> bool:
    """Restart one program, saying so (and why), or why it could not be."""
    try:
        sup.restart(program)
    except xmlrpc.client.Fault as exc:
        fault = exc.faultString.split(":", 1)[0]
        said = {"SPAWN_ERROR": "it exited as it started", "ABNORMAL_TERMINATION":
                "it exited as it started"}.get(fault, exc.faultString)
        _fail(f"could not restart {name}: {said} ({fault}); `porch logs {name}` tells why")
        return False
    print(f"porch: restarted {name}" + (f" ({why})" if why else ""))
    return True


def cmd_logs(args: argparse.Namespace) -> int:
    home = NodeHome.resolve(args.home)
    try:
        config = node_config.load_home(home)
    except node_config.ConfigError:  # the logs are wanted most when things are broken
        config = node_config.NodeConfig()
    if args.all:
        if args.service:
            return _fail("give a SERVICE or --all, not both", 2)
        return logmerge.print_all(home.logs_dir, supervise.display_names(config), args.lines, args.follow)
    if not args.service:
        return _fail("name a SERVICE (kernel, http-server, http-client, supervisord, a process id), "
                     "or --all", 2)
    try:
        program = supervise.program_name(config, args.service)
    except KeyError as exc:
        if args.service == "supervisord" or (home.logs_dir / f"{args.service}.log").exists():
            program = args.service
        else:
            return _fail(str(exc.args[0]), 2)
    path = home.logs_dir / f"{program}.log"
    if not path.exists():
        return _fail(f"no log yet at {path}")
    with path.open("rb") as f:
        lines = f.readlines()
        sys.stdout.buffer.writelines(lines[len(lines) - args.lines:] if args.lines else [])
        sys.stdout.flush()
        if not args.follow:
            return 0
        try:
            while True:
                chunk = f.read()
                if chunk:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                else:
                    time.sleep(0.25)
        except KeyboardInterrupt:
            return 0


def cmd_top(args: argparse.Namespace) -> int:
    home = NodeHome.resolve(args.home)
    if not supervise.Supervisor(home).running() and not home.kernel_socket.exists():
        return _fail(f"no node is running in {home.root}; `porch up`", 3)
    if not args.interval > 0:
        return _fail("--interval must be more than 0", 2)
    return node_figures.top(home, args.interval, args.once)


def cmd_send(args: argparse.Namespace) -> int:
    from porch import PorchError, Process
    from porch.address import InvalidProcessId, ProcessId

    home = NodeHome.resolve(args.home)
    try:
        ProcessId.parse(args.process)
    except InvalidProcessId as exc:
        return _fail(f"invalid process id: {exc}", 2)
    try:
        blob = Path(args.blob).read_bytes() if args.blob else None
    except OSError as exc:
        return _fail(f"cannot read --blob {args.blob}: {exc.strerror or exc}", 2)
    if not home.kernel_socket.exists():
        return _fail(f"no node running at {home.root} (no {home.kernel_socket}); `porch up`", 3)
    try:
        with Process(f"terminal-{os.getpid()}:terminal:sys", home=home.root,
                     connect_timeout=args.connect_timeout) as proc:
            if args.no_response:
                proc.send_request(args.process, args.body, blob=blob, mime=args.mime)
                return 0
            reply = proc.send_and_await_response(args.process, args.body, timeout=args.timeout,
                                                 blob=blob, mime=args.mime)
    except PorchError as exc:
        return _fail(str(exc))
    output = reply.body
    if reply.blob is not None:
        output += (b"\n" if reply.body else b"") + reply.blob.bytes
    if output and not output.endswith(b"\n") and not args.raw:
        output += b"\n"  # as `echo`: the next prompt starts on its own line
    sys.stdout.buffer.write(output)
    sys.stdout.flush()
    return 0


# ---------------------------------------------------------------------------- apps


def cmd_new(args: argparse.Namespace) -> int:
    from porch.cli import new

    parent = Path(args.dir).expanduser()
    if not parent.is_dir():
        return _fail(f"--dir {args.dir}: no such directory", 2)
    try:
        app = new.create(args.name, parent, publisher=args.publisher, ui=args.ui,
                         use_asyncio=args.use_async)
    except (new.NewAppError, OSError) as exc:
        return _fail(str(exc), 2)
    shown = os.path.relpath(app.directory) if not os.path.relpath(app.directory).startswith("..") \
        else str(app.directory)
    print(f"porch: created {shown}/ for the process {app.spec.id}: {', '.join(app.files)}")
    home = NodeHome.resolve(args.home)
    if args.add:
        try:
            added = new.add(home, app.spec)
        except (new.NewAppError, ValueError, OSError) as exc:
            return _fail(f"the app was made, but not added: {exc}", 2)
        print(f"porch: {'added' if added else 'already in'} {home.config_path}: {app.spec.id}")
    else:
        print(f"porch: its entry for porch.toml (`porch new --add` writes it into "
              f"{home.config_path}):\n\n{node_config.render_process(app.spec)}", end="")
    port = read_port(home.state_dir / "port") or 8080
    print(f"porch: `porch up` runs it (on a running node: applies porch.toml); then "
          f"http://localhost:{port}/{app.spec.id}/api/hello"
          + (f" and the page, http://localhost:{port}/{app.spec.id}/" if args.ui else ""))
    print(f"porch: `porch dev {shown}` restarts it whenever you edit it; "
          f"`cd {shown} && python -m pytest` tests it on a node of its own")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from porch.cli import dev, new

    home = NodeHome.resolve(args.home)
    app_dir = Path(args.app_dir).expanduser().resolve()
    if not app_dir.is_dir():
        return _fail(f"{args.app_dir}: no such directory", 2)
    try:
        if (app_dir / new.ENTRY).exists():
            spec = new.entry(app_dir)
            if new.add(home, spec):
                print(f"porch: added {spec.id} to {home.config_path}")
        else:
            declared = [p for p in node_config.load_home(home).processes
                        if p.directory and (home.root / p.directory).resolve() == app_dir]
            if not declared:
                return _fail(f"{app_dir} has no {new.ENTRY} and no [[process]] of {home.config_path} "
                             "runs in it: which process is it?", 2)
            spec = declared[0]
    except (new.NewAppError, node_config.ConfigError, OSError) as exc:
        return _fail(str(exc), 2)
    if not spec.command:
        return _fail(f"{spec.id} has no command in porch.toml: the node does not run it", 2)
    up = ["up", "--detach", "--home", str(home.root)] + (["--port", str(args.port)] if args.port else [])
    rc = cmd_up(build_parser().parse_args(up))  # start the node, or apply porch.toml
    sup = supervise.Supervisor(home)
    if rc == 2 or not sup.running():  # refused (porch.toml, the port...), said why
        return rc or 1
    if spec.program_name not in {i["name"] for i in sup.processes()}:
        return _fail(f"{spec.id} is not in the running node", 1)
    # rc 1: it failed to start (said above); watch on: the fix is an edit away
    spec = next(p for p in node_config.load_home(home).processes if p.id == spec.id)
    return dev.loop(home, dataclasses.replace(spec, directory=str(app_dir)), sup)


# ---------------------------------------------------------------------------- main


def _service(module: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        import importlib

        result: int = importlib.import_module(module + ".service").main(argv)
        return result

    return run


SERVICE_MAINS = {
    "kernel": _service("porch.kernel"),
    "http-server": _service("porch.http_server"),
    "http-client": _service("porch.http_client"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("porch")
    except PackageNotFoundError:
        return "unknown (not installed)"


def new_app_publisher() -> str:
    from porch.cli.new import DEFAULT_PUBLISHER

    return DEFAULT_PUBLISHER


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="porch",
        description="Run a porch node: a kernel, an HTTP server and an HTTP client "
        "for isolated Python processes, supervised by supervisord.",
    )
    parser.add_argument("--version", action="version", version=f"porch {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the node (creating its home), or apply porch.toml "
                        "to the running node",
                        description="Create the node home (config, state, logs) on first "
                        "use and run every service under supervisord, in the foreground "
                        "(Ctrl-C stops all) or detached. porch.toml is checked first. On a "
                        "running node, apply porch.toml instead: start added processes, "
                        "stop removed ones, restart what an edit changed.")
    _home_arg(up)
    up.add_argument("--node", help="node name, fixed at creation (default porch-<6 hex digits>.os, "
                    "from the home's path: two homes of one machine never share one)")
    up.add_argument("--port", type=port_number, help="HTTP port (1-65535); fails if busy "
                    "(default: the node's remembered port, else the first free port from 8080)")
    up.add_argument("--host", help="address the HTTP server listens on (default 0.0.0.0)")
    up.add_argument("--password", help=f"node password at first start, at least {MIN_PASSWORD} "
                    "characters (default: $PORCH_PASSWORD, else asked, else generated and shown once)")
    up.add_argument("--demo", action="store_true", help="run the example apps (hello, chat, echo) "
                    "with the node, for this run (porch.toml is not edited)")
    up.add_argument("--detach", "-d", action="store_true", help="run in the background")
    up.add_argument("--wait", type=seconds, default=60.0, metavar="S",
                    help="seconds to wait for every service to run (default 60); the node "
                    "is left running after it")
    up.set_defaults(func=cmd_up)

    password = sub.add_parser("password", help="change the node password (logs everyone out)",
                              description="Change the node password; every session is logged "
                              "out and a running http-server is restarted.")
    _home_arg(password)
    given = password.add_mutually_exclusive_group()
    given.add_argument("--password", help="the new password (default: $PORCH_PASSWORD, else "
                       "asked at a terminal)")
    given.add_argument("--generate", action="store_true",
                       help="generate a random password and print it once")
    password.set_defaults(func=cmd_password)

    rpc_token = sub.add_parser("rpc-token", help="print the RPC endpoint's token",
                               description="Print the node's RPC token (state/rpc.token, "
                               "0600; made on first use). A script calling POST "
                               "/rpc:distro:sys/message sends it as `Authorization: Bearer "
                               "<token>`. To change it, delete the file and `porch restart "
                               "http-server`.")
    _home_arg(rpc_token)
    rpc_token.set_defaults(func=cmd_rpc_token)

    metrics_token = sub.add_parser("metrics-token", help="print the scrape endpoint's token",
                                   description="Print the node's metrics token (state/metrics.token, "
                                   "0600; made on first use). Prometheus sends it as "
                                   "`Authorization: Bearer <token>` to GET "
                                   "/http-server:distro:sys/metrics (docs/metrics.md). To change "
                                   "it, delete the file and `porch restart http-server`.")
    _home_arg(metrics_token)
    metrics_token.set_defaults(func=cmd_metrics_token)

    top = sub.add_parser("top", help="the node's processes and their figures, live",
                         description="Redraw every few seconds each process's state, uptime, "
                         "restarts, request rate, errors, p50/p99 latency, open WebSockets, memory "
                         "and the last minutes' requests (Ctrl-C quits). The same figures as the "
                         "node page; the http-server must be running.")
    _home_arg(top)
    top.add_argument("-n", "--interval", type=float, default=2.0, metavar="SECONDS",
                     help="seconds between redraws (default 2)")
    top.add_argument("--once", action="store_true", help="print the table once and exit")
    top.set_defaults(func=cmd_top)

    down = sub.add_parser("down", help="stop a running node",
                          description="Stop every service and process of the node, then "
                          "supervisord (waits up to 30 s).")
    _home_arg(down)
    down.set_defaults(func=cmd_down)

    status = sub.add_parser("status", help="show the node's services and port",
                            description="Show the node's name, HTTP address, and the state of "
                            "every service and process, remote ones included (exit 3 when no "
                            "node runs).")
    _home_arg(status)
    status.set_defaults(func=cmd_status)

    restart = sub.add_parser("restart", help="restart services alone (kernel, http-server, "
                             "http-client, or a process id)",
                             description="Restart the named services or processes alone; the "
                             "others keep running (processes re-register with a restarted "
                             "kernel; http-server keeps its port open). Refused while "
                             "porch.toml has a mistake.")
    _home_arg(restart)
    restart.add_argument("services", nargs="+", metavar="SERVICE",
                         help="kernel, http-server, http-client, or a process id from porch.toml")
    restart.set_defaults(func=cmd_restart)

    logs = sub.add_parser("logs", help="print a service's log",
                          description="Print the end of a service's or process's log "
                          "(<home>/logs/).")
    _home_arg(logs)
    logs.add_argument("service", metavar="SERVICE", nargs="?", help="kernel, http-server, "
                      "http-client, supervisord, or a process id")
    logs.add_argument("--all", action="store_true",
                      help="every log of the node, interleaved by time (with -f: as they grow)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing what is appended (Ctrl-C stops)")
    logs.add_argument("-n", "--lines", type=count, default=50, metavar="N",
                      help="print the last N lines (default 50; 0: none, with -f only new ones)")
    logs.set_defaults(func=cmd_logs)

    keys_cli.add_parser(sub, _home_arg)

    send = sub.add_parser("send", help="send a request to a process and print its response",
                          description="Like Kinode's terminal `m`: send BODY to PROCESS "
                          "(name:package:publisher) as terminal-<pid>:terminal:sys.")
    _home_arg(send)
    send.add_argument("process", metavar="PROCESS", help="the target's process id, "
                      "name:package:publisher")
    send.add_argument("body", metavar="BODY", help="the request body (text)")
    send.add_argument("--timeout", type=seconds, default=5.0,
                      help="seconds to wait for the response (default 5)")
    send.add_argument("--no-response", action="store_true", help="do not wait for a response")
    send.add_argument("--blob", help="file whose bytes travel as the blob")
    send.add_argument("--mime", help="mime type of the blob")
    send.add_argument("--raw", action="store_true", help="print the response's bytes exactly "
                      "(default: a newline is added after a response that does not end in one)")
    send.add_argument("--connect-timeout", type=seconds, default=5.0,
                      help="seconds to wait for the kernel to accept the terminal (default 5)")
    send.set_defaults(func=cmd_send)

    new_app = sub.add_parser("new", help="make a ready app directory (Kinode's `kit new`)",
                             description="Make the directory NAME with an app: its process "
                             "(app.py) with a public and a login-only API path, a test that "
                             "starts a throwaway node and calls it (test_app.py), its porch.toml "
                             "entry (process.toml) and, with --ui, a page in porch's look. The "
                             "process id is NAME:NAME:PUBLISHER.")
    _home_arg(new_app)
    new_app.add_argument("name", metavar="NAME", help="the app's name: lower-case letters, digits, -")
    new_app.add_argument("--ui", action="store_true", help="with a web page (ui/), served at the app's /")
    new_app.add_argument("--async", dest="use_async", action="store_true",
                         help="an asyncio process (porch.AsyncProcess) instead of a blocking one")
    new_app.add_argument("--add", action="store_true", help="add its entry to the node's porch.toml "
                         "(`porch up` then runs it)")
    new_app.add_argument("--publisher", default=new_app_publisher(), help="the publisher part of "
                         "its process id (default %(default)s)")
    new_app.add_argument("--dir", default=".", help="where to make NAME/ (default: here)")
    new_app.set_defaults(func=cmd_new)

    dev = sub.add_parser("dev", help="run an app and restart it whenever its files change",
                         description="Add the app in APP_DIR to porch.toml if needed (from its "
                         "process.toml), start the node or apply porch.toml, then restart the "
                         "app whenever one of its files changes, printing its log. Ctrl-C stops "
                         "watching; the node keeps running.")
    _home_arg(dev)
    dev.add_argument("app_dir", metavar="APP_DIR", help="the app's directory")
    dev.add_argument("--port", type=port_number, help="HTTP port, if the node is started here")
    dev.set_defaults(func=cmd_dev)

    for name in SERVICE_MAINS:
        svc = sub.add_parser(name, help=f"run the {name} service in the foreground "
                             "(what supervisord runs)", add_help=False)
        svc.add_argument("rest", nargs=argparse.REMAINDER)
        svc.set_defaults(func=None, service=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SERVICE_MAINS:
        return SERVICE_MAINS[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`porch status | head -1`): stop quietly, as `cat` would.
        # stdout is pointed at /dev/null so that the flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return result


if __name__ == "__main__":
    sys.exit(main())

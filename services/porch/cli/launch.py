"""`python -m porch.cli.launch --home H PROCESS_ID`: start a user process from porch.toml.

supervisord runs this instead of the process's command, so that the command, working
directory and environment come straight from the node config: nothing has to survive
supervisord's limited quoting of `environment=` (values holding both kinds of quotes
are impossible there), secrets in the environment never show in `ps`, and an edited
command takes effect at the next `porch restart PROCESS` without re-rendering.

The command runs under /bin/sh with the node's own Python environment first on PATH
(the directory of the interpreter running porch, as an activated virtualenv would
have it): `command = "python app.py"` then means the Python that has porch installed,
also when the node was started by systemd or supervisord with a bare PATH.

Each start is counted (porch.node.starts: the node page's restarts). With `--relay`
(what `porch up` renders), the launcher stays and timestamps every line the process
prints (porch.cli.relay); without, it becomes the command.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from porch.cli import relay
from porch.node.config import ConfigError, load_home
from porch.node.home import ENV_HOME, ENV_PROCESS, NodeHome
from porch.node.lifetime import die_with_parent, parent_is_supervisord
from porch.node.logs import ENV_LOG_FORMAT
from porch.node.service_token import ENV_SERVICE_TOKEN
from porch.node.starts import record_start


def node_path(path: str) -> str:
    """PATH with the directory of porch's interpreter first (once)."""
    bin_dir = os.path.dirname(sys.executable)  # not resolved: a venv's python is a symlink
    rest = [d for d in path.split(os.pathsep) if d and d != bin_dir]
    return os.pathsep.join([bin_dir, *rest])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m porch.cli.launch")
    parser.add_argument("--home", required=True)
    parser.add_argument("--relay", action="store_true",
                        help="stay, and timestamp each line the process prints")
    parser.add_argument("process_id")
    args = parser.parse_args(argv)
    if parent_is_supervisord():  # the node is gone with supervisord: so is the app
        die_with_parent(signal.SIGTERM)  # (kept across the exec below, and relayed)
    home = NodeHome.resolve(args.home)
    try:
        config = load_home(home)
    except ConfigError as exc:
        print(f"porch launch: {exc}", file=sys.stderr)
        return 2
    spec = next((p for p in config.processes if p.id == args.process_id), None)
    if spec is None or not spec.command:
        print(f"porch launch: {args.process_id} has no command in {home.config_path}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.pop(ENV_SERVICE_TOKEN, None)  # a user process never gets the services' token
    env.update(spec.environment)
    env[ENV_HOME] = str(home.root)
    env[ENV_PROCESS] = spec.id
    env["PATH"] = node_path(env.get("PATH", os.defpath))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env[ENV_LOG_FORMAT] = config.logging.format
    os.chdir(spec.directory or home.root)
    record_start(home, spec.program_name)
    argv = ["/bin/sh", "-c", "exec " + spec.command]
    if args.relay:
        return relay.run(argv, env, spec.id, config.logging.format)
    os.execve("/bin/sh", argv, env)


if __name__ == "__main__":
    sys.exit(main())

"""Supervision: render supervisord's config for a node home and talk to supervisord.

Every service is its own [program], so `porch restart http-server` (or
`supervisorctl restart http-server`) restarts it alone. User processes from porch.toml
become programs named "app-<id with : and . replaced>".

The templates live in the package (porch/cli/*.tmpl) rather than in deploy/ so that
an installed wheel can render them; deploy/ keeps the systemd unit and a sample config.

supervisord's socket asks for a login (`porch.node.supervisor`, which also holds the
XML-RPC client); the rendered config holds it too, so it is written 0600.

`porch up` on a running node applies porch.toml: it re-renders the config, has
supervisord reread it and add, remove or replace the programs that differ (its
`supervisorctl update`), and restarts the services whose settings changed, which it
knows from run/applied.json: for each program, the part of porch.toml it started with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from porch.files import write_atomic
from porch.node.config import NodeConfig
from porch.node.home import ENV_HOME, ENV_PROCESS, NodeHome
from porch.node.supervisor import SUPERVISOR_USER, Supervisor, credentials

__all__ = ["SERVICES", "SUPERVISOR_USER", "Applied", "Program", "Supervisor", "credentials",
           "display_names", "fingerprints", "known_names", "program_name", "render", "write"]


@dataclass(frozen=True)
class Program:
    name: str
    command: list[str]
    priority: int
    environment: dict[str, str]
    directory: str = ""
    autostart: bool = True


# The services every node runs, in start order. Each also answers `porch <name>`.
SERVICES: tuple[str, ...] = ("kernel", "http-server", "http-client")


def service_programs(home: NodeHome, extra_args: dict[str, list[str]] | None = None) -> list[Program]:
    extra_args = extra_args or {}
    py = sys.executable
    modules = {"kernel": "porch.kernel", "http-server": "porch.http_server",
               "http-client": "porch.http_client"}
    return [
        Program(
            name,
            [py, "-m", modules[name], "--home", str(home.root), *extra_args.get(name, [])],
            priority=10 if name == "kernel" else 20,
            environment={ENV_HOME: str(home.root)},
        )
        for name in SERVICES
    ]


def user_programs(home: NodeHome, config: NodeConfig) -> list[Program]:
    """One program per process with a command; porch.cli.launch reads the command,
    directory and environment from porch.toml when it starts, and timestamps its output."""
    return [
        Program(
            spec.program_name,
            [sys.executable, "-m", "porch.cli.launch", "--home", str(home.root), "--relay", spec.id],
            priority=30,
            environment={ENV_HOME: str(home.root), ENV_PROCESS: spec.id},
            directory=spec.directory,
            autostart=spec.autostart,
        )
        for spec in config.processes
        if spec.command
    ]


def _escape(value: str) -> str:
    """supervisord interpolates %(name)s in values: a literal % must be doubled."""
    return value.replace("%", "%%")


def _env(environment: dict[str, str]) -> str:
    items = {"PYTHONUNBUFFERED": "1", **environment}
    return ",".join(
        f'{k}="{_escape(v).replace(chr(34), chr(92) + chr(34))}"' for k, v in items.items()
    )


def render(home: NodeHome, config: NodeConfig, *, foreground: bool,
           extra_args: dict[str, list[str]] | None = None,
           login: tuple[str, str] | None = None) -> str:
    templates = resources.files("porch.cli")
    head = Template(templates.joinpath("supervisord.conf.tmpl").read_text())
    program = Template(templates.joinpath("program.conf.tmpl").read_text())
    common = {
        "home": _escape(str(home.root)),
        "run": _escape(str(home.run_dir)),
        "logs": _escape(str(home.logs_dir)),
        "conf": _escape(str(home.supervisord_conf)),
        "node": _escape(config.node),
    }
    auth = f"username={_escape(login[0])}\npassword={_escape(login[1])}\n" if login else ""
    # As root, supervisord logs a CRIT line at every start unless told which user to be.
    user = f"user={_escape(pwd.getpwuid(0).pw_name)}\n" if os.geteuid() == 0 else ""
    # silent: in the foreground, supervisord's own log lines (a dozen at every start and
    # stop) go to logs/supervisord.log only; `porch up` says what matters itself.
    text = head.substitute(common, nodaemon=str(foreground).lower(), silent="true",
                           auth=auth, user=user)
    for prog in service_programs(home, extra_args) + user_programs(home, config):
        text += program.substitute(
            common,
            name=prog.name,
            command=_escape(shlex.join(prog.command)),
            directory=_escape(prog.directory or str(home.root)),
            environment=_env(prog.environment),
            priority=prog.priority,
            autostart=str(prog.autostart).lower(),
        )
    return text


def write(home: NodeHome, config: NodeConfig, *, foreground: bool,
          extra_args: dict[str, list[str]] | None = None) -> Path:
    """Render the config into run/supervisord.conf (0600: it holds the socket login)."""
    text = render(home, config, foreground=foreground, extra_args=extra_args,
                  login=credentials(home, create=True))
    write_atomic(home.supervisord_conf, text.encode())
    return home.supervisord_conf


# ---------------------------------------------------------------------------- applied config


def fingerprints(config: NodeConfig) -> dict[str, Any]:
    """For each program, the part of porch.toml it reads when it starts: when that part
    differs from what the running program started with, `porch up` restarts it."""
    # Every service reads [logging] and [metrics] at its start; the launcher of user
    # processes reads the log format.
    common = {"logging": dataclasses.asdict(config.logging), "metrics": dataclasses.asdict(config.metrics)}
    prints: dict[str, Any] = {
        # capabilities and `public` are the kernel's business, not the processes'
        "kernel": {"node": config.node, "kernel": dataclasses.asdict(config.kernel),
                   "grants": {k: sorted(v) for k, v in config.grants().items() if v},
                   "private": sorted(config.private()),
                   # who may connect from other machines is read at the kernel's start
                   "keys": config.remote_keys(), **common},
        "http-server": {"node": config.node, "settings": config.http_server, **common},
        "http-client": {"settings": config.http_client, **common},
    }
    for spec in config.processes:
        if spec.command:
            prints[spec.program_name] = {"id": spec.id, "command": spec.command,
                                         "directory": spec.directory,
                                         "environment": spec.environment,
                                         "log_format": config.logging.format}
    # through JSON, so that a fresh value compares equal to one read back from the file
    result: dict[str, Any] = json.loads(json.dumps(prints, default=str, sort_keys=True))
    return result


@dataclass
class Applied:
    """run/applied.json: how the running supervisord was started and what each of its
    programs read from porch.toml."""

    foreground: bool
    extra_args: dict[str, list[str]]
    programs: dict[str, Any]

    @classmethod
    def read(cls, home: NodeHome) -> Applied | None:
        try:
            data = json.loads(home.applied_path.read_text())
            return cls(bool(data["foreground"]), dict(data["extra_args"]), dict(data["programs"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, home: NodeHome) -> None:
        write_atomic(home.applied_path, (json.dumps(dataclasses.asdict(self), indent=1) + "\n").encode())


# ---------------------------------------------------------------------------- names


def program_name(config: NodeConfig, name: str) -> str:
    """Map what a user types (service name, process id, or program name) to a program."""
    if name in SERVICES:
        return name
    for spec in config.processes:
        if name in (spec.id, spec.program_name):
            if spec.key:
                raise KeyError(f"{spec.id} runs on another machine (it has a key in porch.toml): "
                               "the node does not run it (docs/remote.md)")
            if not spec.command:
                raise KeyError(f"{spec.id} has no command in porch.toml: the node does not run it")
            return spec.program_name
    raise KeyError(f"unknown service {name!r}; known: {', '.join(known_names(config))}")


def known_names(config: NodeConfig) -> list[str]:
    """What `porch restart` and `porch logs` accept: the services and the process ids."""
    return list(SERVICES) + [p.id for p in config.processes if p.command]


def display_names(config: NodeConfig) -> dict[str, str]:
    """Program name -> what people call it (the process id for user processes)."""
    return {p.program_name: p.id for p in config.processes}

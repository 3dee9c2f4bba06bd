"""The node's processes as the node page, `porch status` and the scrape show them: one
row per service and per process, with the state an operator cares about.

The state joins what supervisord says of the program with whether the process is
registered with the kernel (a program can run for a while before its process
registers, and only then is it reachable): running; starting, or restarting when it
started before since `porch up`; backing off (supervisord waits before trying again:
it keeps exiting); fatal (supervisord gave up); stopped, exited. A node not run by
supervisord (a test's services started by hand) has only the kernel's word: running
or offline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from porch.address import HTTP_CLIENT, HTTP_SERVER, KERNEL, is_reserved, is_valid
from porch.http_server.gather import NodeNow
from porch.node.procstat import ProcStat, proc_stat

# supervisord program -> process id, for the node's services.
SERVICES = {"kernel": KERNEL, "http-server": HTTP_SERVER, "http-client": HTTP_CLIENT}
# What a start of each service is counted as (porch.node.starts): the http-server's
# restarts are its worker's (the keeper restarts it without supervisord).
START_NAMES = {KERNEL: "kernel", HTTP_SERVER: "http-server.worker", HTTP_CLIENT: "http-client"}


@dataclass
class Row:
    id: str
    kind: str  # "service", "app" or "remote"
    state: str
    detail: str  # supervisord's state and description, or the kernel's word
    pid: int | None
    started: float | None  # Unix seconds
    restarts: int | None  # since `porch up` (None: not known)
    registered: bool
    program: str | None  # supervisord's name for it, if it runs one
    restartable: bool  # the node page may restart it (a user process run by supervisord)
    stat: ProcStat | None = None


def state_name(supervisor_state: str | None, registered: bool, starts: int,
               always_registered: bool = False) -> str:
    """One word (or two) for an operator. `always_registered`: the kernel, which is
    not a registered process of itself."""
    up = registered or always_registered
    if supervisor_state is None:
        return "running" if up else "offline"
    again = starts > 1
    if supervisor_state == "RUNNING":
        if up:
            return "running"
        return "restarting" if again else "starting"
    if supervisor_state == "STARTING":
        return "restarting" if again else "starting"
    return {"BACKOFF": "backing off", "FATAL": "fatal", "STOPPED": "stopped", "EXITED": "exited",
            "STOPPING": "stopping"}.get(supervisor_state, supervisor_state.lower())


def rows(now: NodeNow, with_traffic: Iterable[str] = (), own_pid: int | None = None) -> list[Row]:
    """Services first, then the processes of porch.toml, then any other process that is
    registered or has HTTP traffic (`with_traffic`), each group by id."""
    config = now.config
    registry = now.registry
    entries = {e.process_id: e for e in registry.entries} if registry is not None else {}
    infos = {str(i["name"]): i for i in now.supervised} if now.supervised is not None else {}
    program_of = {p.id: p.program_name for p in config.processes if p.command}
    out: list[Row] = []
    seen: set[str] = set()

    def add(pid: str, kind: str, program: str | None, start_name: str | None) -> None:
        seen.add(pid)
        info = infos.get(program) if program else None
        entry = entries.get(pid)
        registered = entry is not None
        starts = now.starts.get(start_name or "", 0)
        kernel = pid == KERNEL and registry is not None
        sup_state = str(info["statename"]) if info is not None else None
        if now.supervised is not None and program is not None and info is None:
            sup_state = "NOT STARTED"  # in porch.toml, not in the running node
        state = state_name(sup_state, registered, starts, always_registered=kernel)
        os_pid: int | None = None
        if entry is not None and entry.os_pid and not entry.address:
            os_pid = int(entry.os_pid)
        elif kernel and registry is not None and registry.kernel_pid:
            os_pid = int(registry.kernel_pid)
        elif pid == HTTP_SERVER and own_pid:
            os_pid = own_pid
        elif info is not None and info.get("pid"):
            os_pid = int(info["pid"])
        stat = proc_stat(os_pid) if os_pid else None
        if info is not None:
            detail = f"{info['statename']}: {info.get('description', '')}".rstrip(": ")
        elif entry is not None and entry.address:
            detail = f"connected from {entry.address}"
        else:
            detail = "registered" if registered or kernel else "not registered with the kernel"
        started = stat.started if stat is not None else (entry.registered_at if entry is not None else None)
        out.append(Row(pid, kind, state, detail, os_pid, started,
                       max(0, starts - 1) if starts else None, registered or kernel,
                       program if info is not None else None,
                       kind == "app" and info is not None, stat))

    for program, pid in SERVICES.items():
        add(pid, "service", program, START_NAMES[pid])
    for spec in sorted(config.processes, key=lambda p: p.id):
        if spec.command:
            add(spec.id, "app", spec.program_name, spec.program_name)
        elif spec.key:
            add(spec.id, "remote", None, None)
    extra = {pid for pid in [*entries, *with_traffic] if is_valid(pid) and not is_reserved(pid)}
    for pid in sorted(extra - seen):
        entry = entries.get(pid)
        add(pid, "remote" if entry is not None and entry.address else "app", program_of.get(pid), None)
    return out

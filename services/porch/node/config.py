"""The node config, <home>/porch.toml: node name, service settings, user processes.

    node = "mynode.os"

    [kernel]
    max_request_timeout_s = 3600
    listen = "tcp://0.0.0.0:9555"   # optional: processes on other machines (docs/remote.md)

    [http_server]          # settings of porch.http_server.settings.HttpServerSettings
    request_timeout_s = 15

    [http_client]          # settings of porch.http_client.settings.HttpClientSettings

    [logging]              # every service's log lines (docs/metrics.md)
    format = "text"        # or "json": one JSON object per line
    access_log = false     # true: a line per HTTP request and WebSocket open/close

    [metrics]              # the node's figures (docs/metrics.md)
    enabled = true         # false: nothing is counted on the hot paths

    [[process]]            # a user process (supervised by the node when it has a command)
    id = "hello:hello:sys"
    command = "python examples/hello/app.py"   # optional: without it, the entry only
                                               # declares the id's capabilities (a process
                                               # started some other way)
    directory = "/path/to/run/in"          # optional, default: the home
    capabilities = ["http-server:distro:sys"]
    public = true                          # optional, default true
    autostart = true                       # optional
    environment = { GREETING = "hi" }      # optional

    [[process]]            # a process on another machine (docs/remote.md): no command,
    id = "worker:gpu:sys"  # the public key of its pair (`porch keys new worker:gpu:sys`)
    key = "<40 characters of Z85>"
    capabilities = ["http-server:distro:sys"]

    [[process]]            # what the RPC endpoint (POST /rpc:distro:sys/message) may
    id = "rpc:distro:sys"  # reach besides public processes; its messages go out under
    capabilities = []      # this id. No command: the http-server serves it.

Unknown keys are errors, not silently ignored: a typo must not quietly change nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from porch.address import RESERVED_PACKAGE, RPC, InvalidProcessId, ProcessId, is_reserved
from porch.node.home import NodeHome
from porch.node.keys import is_key

DEFAULT_NODE = "porch.os"


class ConfigError(ValueError):
    """The node config is unreadable or wrong; the message says where and how."""


@dataclass(frozen=True)
class ProcessSpec:
    id: str
    command: str = ""
    directory: str = ""
    capabilities: tuple[str, ...] = ()
    public: bool = True
    autostart: bool = True
    environment: dict[str, str] = field(default_factory=dict)
    # A process on another machine: the public key it proves over TCP (CURVE).
    key: str = ""

    @property
    def program_name(self) -> str:
        """The supervisord program name (no ':' allowed there)."""
        return "app-" + self.id.replace(":", "-").replace(".", "_")


@dataclass(frozen=True)
class KernelSettings:
    # Request deadlines further ahead are clamped to this (keeps the pending table bounded).
    max_request_timeout_s: float = 3600.0
    # "tcp://HOST:PORT": also accept processes on other machines there (CURVE-encrypted,
    # authenticated by the keys of porch.toml); "" (the default): local processes only.
    listen: str = ""
    # Messages queued to one remote process before sends to it fail Offline.
    remote_queue: int = 1000
    # Remote TCP connections open at once (handshaking included); more are closed.
    remote_connections: int = 128

    def __post_init__(self) -> None:
        if not self.max_request_timeout_s > 0:
            raise ConfigError("[kernel] max_request_timeout_s must be more than 0")
        if self.listen:
            problem = tcp_endpoint_problem(self.listen)
            if problem:
                raise ConfigError(f"[kernel] listen: {problem}")
        if not 1 <= self.remote_queue <= 1_000_000:
            raise ConfigError("[kernel] remote_queue must be 1 to 1000000 messages")
        if not 1 <= self.remote_connections <= 4096:
            raise ConfigError("[kernel] remote_connections must be 1 to 4096")


LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LoggingSettings:
    # "text": one plain line per event; "json": one JSON object per line, with the
    # timestamp, level, service, process id and (for a request's lines) its request id.
    format: str = "text"
    # The http-server's access log: a line per HTTP request and per WebSocket open and
    # close (method, path, status, bytes, duration, process, client, request id).
    access_log: bool = False

    def __post_init__(self) -> None:
        if self.format not in LOG_FORMATS:
            raise ConfigError(f"[logging] format must be one of {', '.join(map(repr, LOG_FORMATS))}, "
                              f"got {self.format!r}")


@dataclass(frozen=True)
class MetricsSettings:
    # Count requests, messages and latencies on the hot paths (docs/metrics.md). Off,
    # the scrape endpoint still answers, with what needs no counting (states, queues).
    enabled: bool = True


def tcp_endpoint_problem(endpoint: str) -> str:
    """What is wrong with a tcp://HOST:PORT endpoint ("" if nothing)."""
    rest = endpoint.removeprefix("tcp://")
    host, _, port = rest.rpartition(":")
    if rest == endpoint or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"expected tcp://HOST:PORT (e.g. tcp://0.0.0.0:9555), got {endpoint!r}"
    if any(c.isspace() or c in "/;@" for c in host):
        return f"{host!r} is not a host name or address"
    return ""


@dataclass(frozen=True)
class NodeConfig:
    node: str = DEFAULT_NODE
    kernel: KernelSettings = KernelSettings()
    processes: tuple[ProcessSpec, ...] = ()
    # Raw sections for the services, validated by their own settings classes.
    http_server: dict[str, Any] = field(default_factory=dict)
    http_client: dict[str, Any] = field(default_factory=dict)
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings = MetricsSettings()

    def grants(self) -> dict[str, tuple[str, ...]]:
        return {p.id: p.capabilities for p in self.processes}

    def remote_keys(self) -> dict[str, str]:
        """Process id -> the public key it must prove (processes on other machines)."""
        return {p.id: p.key for p in self.processes if p.key}

    def private(self) -> list[str]:
        return [p.id for p in self.processes if not p.public]


T = TypeVar("T")


def settings_from(section: dict[str, Any], cls: type[T], where: str) -> T:
    """Build a settings dataclass from a TOML table, checking names and types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(fields))}")
    values: dict[str, Any] = {}
    for name, value in section.items():
        values[name] = _coerce(value, hints[name], f"{where}.{name}")
    try:
        return cls(**values)
    except ConfigError as exc:
        # The class checks values without knowing the file: "[kernel] max_request_timeout_s must be
        # ..." becomes "<file> [kernel]: max_request_timeout_s must be ...".
        message = str(exc)
        table = where[where.rfind(" ["):].strip() if " [" in where else ""
        if table and message.startswith(table):
            message = message[len(table):].lstrip(" :")
        raise ConfigError(f"{where}: {message}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected float (a number), got {value!r}")
    if hint in (int, str, bool):
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{where}: expected a table of strings, got {value!r}")
        return dict(value)
    if origin in (types.UnionType, typing.Union):
        for alt in typing.get_args(hint):
            if alt is type(None) and value is None:
                return None
            try:
                return _coerce(value, alt, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: unexpected value {value!r}")
    raise ConfigError(f"{where}: unsupported setting type {hint!r}")


def parse(text: str, where: str = "porch.toml") -> NodeConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    known = {"node", "kernel", "process", "http_server", "http_client", "logging", "metrics"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                          + ", ".join(sorted(known)))
    for key, kind, shape in (("kernel", dict, "[kernel] must be a table"),
                             ("process", list, "process must be an array of [[process]] tables"),
                             ("http_server", dict, "[http_server] must be a table"),
                             ("http_client", dict, "[http_client] must be a table"),
                             ("logging", dict, "[logging] must be a table"),
                             ("metrics", dict, "[metrics] must be a table")):
        if not isinstance(raw.get(key, kind()), kind):
            raise ConfigError(f"{where}: {shape}")
    node = raw.get("node", DEFAULT_NODE)
    if not isinstance(node, str) or not node or any(c.isspace() or c in ";=,@/" for c in node):
        raise ConfigError(f"{where}: node must be a name like 'mynode.os', got {node!r}")
    kernel = settings_from(raw.get("kernel", {}), KernelSettings, f"{where} [kernel]")
    processes = []
    seen = set()
    keys: dict[str, str] = {}  # public key -> the id it was declared for
    for i, entry in enumerate(raw.get("process", [])):
        here = f"{where} [[process]] #{i + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{here}: expected a table")
        if "id" not in entry:
            raise ConfigError(f"{here}: missing 'id'")
        spec = settings_from(entry, ProcessSpec, here)
        try:
            ProcessId.parse(spec.id)
        except InvalidProcessId as exc:
            raise ConfigError(f"{here}: {exc}") from None
        for cap in spec.capabilities:
            try:
                ProcessId.parse(cap)
            except InvalidProcessId as exc:
                raise ConfigError(f"{here}: capability: {exc}") from None
        if is_reserved(spec.id) and spec.command:
            raise ConfigError(f"{here}: {spec.id} is an id of the node's own services "
                              f"(package {RESERVED_PACKAGE}); an entry for it may grant "
                              f"capabilities ({RPC}) but not run a command")
        if spec.key:
            _check_remote(spec, here, keys)
        if spec.id in seen:
            raise ConfigError(f"{here}: process {spec.id} is declared twice")
        seen.add(spec.id)
        processes.append(spec)
    log_settings = settings_from(raw.get("logging", {}), LoggingSettings, f"{where} [logging]")
    metrics = settings_from(raw.get("metrics", {}), MetricsSettings, f"{where} [metrics]")
    return NodeConfig(node, kernel, tuple(processes),
                      dict(raw.get("http_server", {})), dict(raw.get("http_client", {})),
                      log_settings, metrics)


def _check_remote(spec: ProcessSpec, here: str, keys: dict[str, str]) -> None:
    """A process on another machine: a valid public key of its own, nothing to run here."""
    if not is_key(spec.key):
        raise ConfigError(f"{here}: key must be a public CURVE key in Z85 (40 characters, "
                          "as `porch keys new` prints it)")
    if is_reserved(spec.id):
        raise ConfigError(f"{here}: {spec.id} is an id of the node's own services "
                          f"(package {RESERVED_PACKAGE}): it never runs on another machine")
    if spec.command:
        raise ConfigError(f"{here}: a process with a key runs on another machine and is not "
                          "supervised by the node: drop its command (docs/remote.md)")
    if spec.key in keys:
        raise ConfigError(f"{here}: this key is declared for {keys[spec.key]} already; "
                          "each remote process has a key pair of its own (`porch keys new`)")
    keys[spec.key] = spec.id


def load(path: Path) -> NodeConfig:
    if not path.exists():
        return NodeConfig()
    return parse(path.read_text(), str(path))


def default_node_name(home: NodeHome) -> str:
    """porch-<6 hex digits of the home's path>.os, the name a new home gets unless told
    otherwise: the login cookie is named after the node (kinode-auth_<node>, as in
    Kinode) and browsers do not tell ports apart, so two nodes of one machine with one
    name would log each other out."""
    return f"porch-{hashlib.sha256(str(home.root).encode()).hexdigest()[:6]}.os"


def load_home(home: NodeHome) -> NodeConfig:
    """The node's config as every service and command sees it: porch.toml, plus the
    processes of run/demo.toml (`porch up --demo`) that porch.toml does not declare."""
    config = load(home.config_path)
    if not home.demo_config.exists():
        return config
    extra = parse(home.demo_config.read_text(), str(home.demo_config))
    known = {p.id for p in config.processes}
    added = tuple(p for p in extra.processes if p.id not in known)
    return dataclasses.replace(config, processes=config.processes + added) if added else config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def render(node: str, processes: list[ProcessSpec]) -> str:
    """A fresh porch.toml (what `porch up` writes the first time)."""
    lines = [
        "# porch node config. After an edit, run `porch up` again: it checks this file, then",
        "# starts the node, or on a running node starts added [[process]] entries, stops",
        "# removed ones and restarts only what an edit changed. Settings and their",
        "# defaults: README.md, section 'Configuration'.",
        f"node = {_toml_value(node)}",
        "",
        "[http_server]",
        "",
        "[http_client]",
        "",
    ]
    return "\n".join(lines) + "\n" + "".join(render_process(p) for p in processes)


def render_process(p: ProcessSpec) -> str:
    """One [[process]] table, as porch.toml holds it (ends with a blank line)."""
    lines = ["[[process]]", f"id = {_toml_value(p.id)}"]
    if p.command:
        lines.append(f"command = {_toml_value(p.command)}")
    if p.directory:
        lines.append(f"directory = {_toml_value(p.directory)}")
    lines.append(f"capabilities = {_toml_value(list(p.capabilities))}")
    if not p.public:
        lines.append("public = false")
    if not p.autostart:
        lines.append("autostart = false")
    if p.environment:
        lines.append(f"environment = {_toml_value(p.environment)}")
    if p.key:
        lines.append(f"key = {_toml_value(p.key)}")
    return "\n".join(lines) + "\n\n"

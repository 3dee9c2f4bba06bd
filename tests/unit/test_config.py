import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from porch.node.config import (
    ConfigError,
    KernelSettings,
    NodeConfig,
    ProcessSpec,
    _toml_value,
    default_node_name,
    load,
    load_home,
    parse,
    render,
    settings_from,
    tcp_endpoint_problem,
)
from porch.node.home import NodeHome
from porch.node.keys import new_pair


def test_defaults() -> None:
    cfg = parse("")
    assert cfg.node == "porch.os"
    assert cfg.processes == ()


def test_processes_and_capabilities() -> None:
    cfg = parse('node = "n.os"\n[[process]]\nid = "a:b:c"\ncommand = "run"\n'
                'capabilities = ["http-server:distro:sys"]\npublic = false\n')
    (spec,) = cfg.processes
    assert spec.capabilities == ("http-server:distro:sys",)
    assert cfg.grants() == {"a:b:c": ("http-server:distro:sys",)}
    assert cfg.private() == ["a:b:c"]
    assert spec.program_name == "app-a-b-c"


@pytest.mark.parametrize("text, fragment", [
    ("nodes = 'x'", "unknown key(s) nodes"),
    ("[kernel]\nmax_request_timeout = 3", "unknown setting(s) max_request_timeout"),
    ("[kernel]\nmax_request_timeout_s = 'long'", "expected float"),
    ("[[process]]\ncommand = 'x'", "missing 'id'"),
    ("[[process]]\nid = 'A:b:c'\ncommand = 'x'", "name and package must match"),
    ("[[process]]\nid = 'a:b:c'\ncommand = 'x'\n[[process]]\nid = 'a:b:c'\ncommand = 'y'",
     "declared twice"),
    ("node = 'has space'", "node must be a name"),
    ("node = ", "not valid TOML"),
    ("[[process]]\nid = 'rpc:distro:sys'\ncommand = 'x'", "node's own services"),
    ("[[process]]\nid = 'http-server:distro:sys'\ncommand = 'x'", "node's own services"),
])
def test_mistakes_are_reported_clearly(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert fragment in str(err.value)


def test_render_round_trips() -> None:
    spec = ProcessSpec(id="a:b:c", command='python "x y.py"', capabilities=("http-server:distro:sys",),
                       environment={"K": "v"}, public=False)
    cfg = parse(render("n.os", [spec]))
    assert cfg.node == "n.os"
    assert cfg.processes == (spec,)


def test_rpc_gets_its_capabilities_like_any_process() -> None:
    """Issue 9 item 1: a command-less entry for rpc:distro:sys grants the RPC endpoint's
    identity capabilities; the kernel's policy is built from grants()/private()."""
    from porch.kernel.policy import CapabilityPolicy

    default = parse("")
    policy = CapabilityPolicy(default.grants(), default.private())
    assert policy.allows("rpc:distro:sys", "a:b:c")
    assert not policy.allows("rpc:distro:sys", "http-server:distro:sys")
    assert not policy.allows("rpc:distro:sys", "http-client:distro:sys")
    cfg = parse('[[process]]\nid = "rpc:distro:sys"\ncapabilities = ["http-client:distro:sys"]\n')
    assert cfg.grants() == {"rpc:distro:sys": ("http-client:distro:sys",)}
    policy = CapabilityPolicy(cfg.grants(), cfg.private())
    assert policy.allows("rpc:distro:sys", "http-client:distro:sys")
    assert not policy.allows("rpc:distro:sys", "http-server:distro:sys")


# --------------------------------------------------------------------------- where a mistake is


def refusal(text: str, where: str = "porch.toml") -> str:
    with pytest.raises(ConfigError) as err:
        parse(text, where) if where != "porch.toml" else parse(text)
    return str(err.value)


@pytest.mark.parametrize("text, message", [
    ("nodes = 1\nzeta = 2",
     "porch.toml: unknown key(s) nodes, zeta; known: http_client, http_server, kernel, logging, metrics, "
     "node, process"),
    ("[kernel]\nmax_request_timeout = 3\nlistn = ''",
     "porch.toml [kernel]: unknown setting(s) listn, max_request_timeout; "
     "known: listen, max_request_timeout_s, remote_connections, remote_queue"),
    ("[kernel]\nmax_request_timeout_s = 'long'",
     "porch.toml [kernel].max_request_timeout_s: expected float (a number), got 'long'"),
    ("[kernel]\nmax_request_timeout_s = true",
     "porch.toml [kernel].max_request_timeout_s: expected float (a number), got True"),
    ("[kernel]\nremote_queue = true", "porch.toml [kernel].remote_queue: expected int, got True"),
    ("[kernel]\nremote_queue = 1.5", "porch.toml [kernel].remote_queue: expected int, got 1.5"),
    ("[kernel]\nlisten = 9555", "porch.toml [kernel].listen: expected str, got 9555"),
    ("[kernel]\nmax_request_timeout_s = 0",
     "porch.toml [kernel]: max_request_timeout_s must be more than 0"),
    ("[kernel]\nremote_queue = 0", "porch.toml [kernel]: remote_queue must be 1 to 1000000 messages"),
    ("[kernel]\nremote_queue = 1000001", "porch.toml [kernel]: remote_queue must be 1 to 1000000 messages"),
    ("[kernel]\nremote_connections = 0", "porch.toml [kernel]: remote_connections must be 1 to 4096"),
    ("[kernel]\nremote_connections = 4097", "porch.toml [kernel]: remote_connections must be 1 to 4096"),
    ("[kernel]\nlisten = 'tcp://h'",
     "porch.toml [kernel]: listen: expected tcp://HOST:PORT (e.g. tcp://0.0.0.0:9555), got 'tcp://h'"),
    ("kernel = 3", "porch.toml: [kernel] must be a table"),
    ("kernel = [1]", "porch.toml: [kernel] must be a table"),
    ("process = 3", "porch.toml: process must be an array of [[process]] tables"),
    ("[process]\nid = 'a:b:c'", "porch.toml: process must be an array of [[process]] tables"),
    ("process = [1]", "porch.toml [[process]] #1: expected a table"),
    ("[[process]]\nid = 'a:b:c'\n[[process]]\nid = 'd:e:f'\npublic = 'yes'",
     "porch.toml [[process]] #2.public: expected bool, got 'yes'"),
    ("[[process]]\nid = 'a:b:c'\ncapabilities = ['x:y:z', 7]",
     "porch.toml [[process]] #1.capabilities[1]: expected str, got 7"),
    ("[[process]]\nid = 'a:b:c'\ncapabilities = 'x:y:z'",
     "porch.toml [[process]] #1.capabilities: expected a list, got 'x:y:z'"),
    ("[[process]]\nid = 'a:b:c'\nenvironment = 'A=1'",
     "porch.toml [[process]] #1.environment: expected a table of strings, got 'A=1'"),
    ("[[process]]\nid = 'a:b:c'\nenvironment = { A = 1 }",
     "porch.toml [[process]] #1.environment: expected a table of strings, got {'A': 1}"),
    ("http_server = 1", "porch.toml: [http_server] must be a table"),
    ("http_client = 'x'", "porch.toml: [http_client] must be a table"),
    ("logging = 'json'", "porch.toml: [logging] must be a table"),
    ("metrics = true", "porch.toml: [metrics] must be a table"),
])
def test_each_refusal_names_the_file_table_and_key(text: str, message: str) -> None:
    assert refusal(text) == message


def test_a_capability_that_is_no_process_id_is_refused_in_place() -> None:
    message = refusal("[[process]]\nid = 'a:b:c'\n[[process]]\nid = 'd:e:f'\ncapabilities = ['nope']")
    assert message.startswith("porch.toml [[process]] #2: capability: ") and "nope" in message


@pytest.mark.parametrize("entry, words", [
    ('key = "nope"', ["key must be a public CURVE key", "`porch keys new`"]),
    ('key = "{k}"\ncommand = "x"', ["runs on another machine", "drop its command", "docs/remote.md"]),
    ('key = "{k}"\n[[process]]\nid = "d:e:f"\nkey = "{k}"',
     ["declared for a:b:c already", "`porch keys new`"]),
])
def test_remote_entries_are_refused_in_place_with_what_to_do(entry: str, words: list[str]) -> None:
    message = refusal('[[process]]\nid = "a:b:c"\n' + entry.replace("{k}", new_pair().public))
    assert message.startswith("porch.toml [[process]] #")
    for word in words:
        assert word in message


def test_mistakes_name_the_file_they_are_in(tmp_path: Path) -> None:
    path = tmp_path / "porch.toml"
    path.write_text("[kernel]\nremote_queue = 0\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value) == f"{path} [kernel]: remote_queue must be 1 to 1000000 messages"


def test_a_path_with_brackets_does_not_confuse_the_table() -> None:
    """The table a message starts with is the last " [" of the place, not one in the
    file's path."""
    where = "/home/me/nodes [old]/porch.toml"
    assert refusal("[kernel]\nremote_queue = 0", where) == (
        f"{where} [kernel]: remote_queue must be 1 to 1000000 messages")
    assert refusal("[[process]]\nid = 'a:b:c'\npublic = 1", where) == (
        f"{where} [[process]] #1.public: expected bool, got 1")


@dataclass(frozen=True)
class Limits:
    """A settings class of a service: its own checks, its own words."""

    limit: int = 1
    label: str = ""
    spare: int | None = None
    either: int | str = 0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ConfigError("limit must be positive")
        if self.label == "tabled":
            raise ConfigError("[limits] label is wrong")
        if self.label == "coloned":
            raise ConfigError("[limits]: label has a colon")


def test_a_service_settings_message_is_kept_whole_after_its_place() -> None:
    with pytest.raises(ConfigError) as err:
        settings_from({"limit": 0}, Limits, "settings.toml")  # a place without a table
    assert str(err.value) == "settings.toml: limit must be positive"
    with pytest.raises(ConfigError) as err:
        settings_from({"limit": 0}, Limits, "f.toml [limits]")
    assert str(err.value) == "f.toml [limits]: limit must be positive"
    with pytest.raises(ConfigError) as err:
        settings_from({"label": "tabled"}, Limits, "f.toml [limits]")
    assert str(err.value) == "f.toml [limits]: label is wrong"
    with pytest.raises(ConfigError) as err:
        settings_from({"label": "coloned"}, Limits, "f.toml [limits]")
    assert str(err.value) == "f.toml [limits]: label has a colon"


def test_optional_settings_take_a_value_of_their_type() -> None:
    assert settings_from({"spare": 3}, Limits, "f [limits]").spare == 3
    assert settings_from({}, Limits, "f [limits]").spare is None
    with pytest.raises(ConfigError) as err:
        settings_from({"spare": "3"}, Limits, "f [limits]")
    assert str(err.value) == "f [limits].spare: unexpected value '3'"
    assert settings_from({"either": "x"}, Limits, "f [limits]").either == "x", "any alternative"
    assert settings_from({"either": 2}, Limits, "f [limits]").either == 2


@dataclass(frozen=True)
class Odd:
    values: frozenset[int] = frozenset()


def test_a_setting_of_a_type_toml_cannot_give_is_reported_as_such() -> None:
    with pytest.raises(ConfigError) as err:
        settings_from({"values": [1]}, Odd, "f [odd]")
    assert str(err.value) == "f [odd].values: unsupported setting type frozenset[int]"


# --------------------------------------------------------------------------- what is accepted


def test_kernel_settings_at_their_bounds() -> None:
    low = parse("[kernel]\nmax_request_timeout_s = 0.5\nremote_queue = 1\nremote_connections = 1\n").kernel
    assert (low.max_request_timeout_s, low.remote_queue, low.remote_connections) == (0.5, 1, 1)
    high = parse("[kernel]\nmax_request_timeout_s = 7200\nremote_queue = 1000000\nremote_connections = 4096\n")
    assert high.kernel == KernelSettings(7200.0, "", 1_000_000, 4096)
    assert isinstance(high.kernel.max_request_timeout_s, float)


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:1", "tcp://h:65535", "tcp://[::1]:9555",
                                      "tcp://Xeon.example:9555", "tcp://10.0.0.1:9555"])
def test_listen_endpoints_accepted(endpoint: str) -> None:
    assert tcp_endpoint_problem(endpoint) == ""
    assert parse(f"[kernel]\nlisten = '{endpoint}'").kernel.listen == endpoint


@pytest.mark.parametrize("endpoint", ["tcp://h:65536", "tcp://h:0", "tcp://h:-1", "tcp://h:x"])
def test_listen_ports_out_of_range(endpoint: str) -> None:
    assert tcp_endpoint_problem(endpoint) == (
        f"expected tcp://HOST:PORT (e.g. tcp://0.0.0.0:9555), got {endpoint!r}")


@pytest.mark.parametrize("host", ["a b", "a\tb", "a/b", "a;b", "u@h"])
def test_listen_hosts_that_are_no_host(host: str) -> None:
    assert tcp_endpoint_problem(f"tcp://{host}:1") == f"{host!r} is not a host name or address"


@pytest.mark.parametrize("node", ["mynode.os", "MyXNode.os", "n-1.os", "a"])
def test_node_names_accepted(node: str) -> None:
    assert parse(f"node = '{node}'").node == node


@pytest.mark.parametrize("node", ["", 5, "a b", "a;b", "a=b", "a,b", "a@b", "a/b", "a\tb", "a\nb"])
def test_node_names_refused(node: object) -> None:
    value = json.dumps(node)
    assert refusal(f"node = {value}").startswith("porch.toml: node must be a name like 'mynode.os'")


def test_the_services_tables_are_handed_over_as_they_are() -> None:
    cfg = parse("[http_server]\nport = 8080\n[http_client]\nworkers = 2\n")
    assert (cfg.http_server, cfg.http_client) == ({"port": 8080}, {"workers": 2})


def test_the_default_node_name_is_the_homes_own(tmp_path: Path) -> None:
    one, two = NodeHome(tmp_path / "a"), NodeHome(tmp_path / "b")
    assert re.fullmatch(r"porch-[0-9a-f]{6}\.os", default_node_name(one))
    assert default_node_name(one) == default_node_name(NodeHome(tmp_path / "a"))
    assert default_node_name(one) != default_node_name(two)


def test_the_demo_adds_only_the_processes_porch_toml_does_not_declare(tmp_path: Path) -> None:
    home = NodeHome(tmp_path / "h")
    home.ensure()
    home.config_path.write_text("node = 'n.os'\n[[process]]\nid = 'a:b:c'\ncommand = 'mine'\n")
    assert load_home(home) == load(home.config_path), "no demo: porch.toml as it is"
    home.demo_config.parent.mkdir(parents=True, exist_ok=True)
    home.demo_config.write_text("[[process]]\nid = 'a:b:c'\ncommand = 'demo'\n"
                                "[[process]]\nid = 'd:e:f'\ncommand = 'demo'\n")
    config = load_home(home)
    assert config.node == "n.os"
    assert [(p.id, p.command) for p in config.processes] == [("a:b:c", "mine"), ("d:e:f", "demo")]
    home.demo_config.write_text("[[process]]\nid = 'a:b:c'\ncommand = 'demo'\n")
    assert load_home(home) == load(home.config_path), "nothing new in the demo"
    home.demo_config.write_text("[[process]]\nid = 'x'\n")
    with pytest.raises(ConfigError) as err:
        load_home(home)
    assert str(err.value).startswith(f"{home.demo_config} [[process]] #1: ")
    assert load(tmp_path / "none.toml") == NodeConfig(), "no porch.toml: the defaults"


# --------------------------------------------------------------------------- writing porch.toml


def test_render_round_trips_every_field() -> None:
    specs = [ProcessSpec(id="a:b:c", command='python "x y.py" C:\\dir\\a.py', directory="/srv/a b",
                         capabilities=("http-server:distro:sys", "http-client:distro:sys"),
                         public=False, autostart=False, environment={"K": "v\\\"", "L": "w"}),
             ProcessSpec(id="w:g:s", key=new_pair().public)]
    text = render("n.os", specs)
    assert parse(text).processes == tuple(specs)
    assert "autostart = false" in text and "public = false" in text


def test_a_fresh_porch_toml_says_how_to_apply_edits_and_where_settings_are() -> None:
    text = render("n.os", [])
    assert "`porch up`" in text and "README.md, section 'Configuration'" in text
    assert parse(text) == NodeConfig(node="n.os")


@pytest.mark.parametrize("value, toml", [
    (True, "true"), (False, "false"), (3, "3"), (2.5, "2.5"), ("a\\b\"c", '"a\\\\b\\"c"'),
    (["x", 1], '["x", 1]'), ({"a": 1, "b": "c"}, '{ a = 1, b = "c" }'), ((), "[]"),
])
def test_toml_values_are_written_as_toml_reads_them(value: object, toml: str) -> None:
    assert _toml_value(value) == toml
    assert tomllib.loads(f"v = {toml}")["v"] == (list(value) if isinstance(value, tuple) else value)


def test_what_toml_cannot_hold_is_not_written() -> None:
    with pytest.raises(TypeError, match="cannot write None as TOML"):
        _toml_value(None)

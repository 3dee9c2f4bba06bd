import pytest

from porch.node.config import ConfigError, ProcessSpec, parse, render


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

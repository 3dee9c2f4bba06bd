"""Keys of processes on other machines, as pure logic (issue 15): key files, the
revoked list, the key ring the ZAP handler and the router ask, porch.toml's rules, and
how a stub picks its kernel and keys. The link itself is tested in
tests/integration/test_remote.py."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from porch.kernel.keyring import MAX_NOTED, KeyRing
from porch.node import config, keys
from porch.node.home import NodeHome
from porch.process.message import PorchError
from porch.process.session import resolve


@pytest.fixture
def home(tmp_path: Path) -> NodeHome:
    h = NodeHome(tmp_path / "h")
    h.ensure()
    h.config_path.write_text('node = "t.os"\n')
    return h


def pair_with(char: str) -> keys.KeyPair:
    """A key pair whose public key contains `char` (Z85 uses '#', among others)."""
    while True:
        pair = keys.new_pair()
        if char in pair.public:
            return pair


def test_is_key() -> None:
    pair = keys.new_pair()
    assert keys.is_key(pair.public) and keys.is_key(pair.secret)
    for bad in ("", pair.public[:-1], pair.public + "A", "é" * 40, " " * 40, '"' * 40):
        assert not keys.is_key(bad), bad


def test_server_keys_are_made_once_0600(home: NodeHome) -> None:
    with pytest.raises(keys.KeyFileError):
        keys.server_keys(home, create=False)
    first = keys.server_keys(home)
    assert keys.server_keys(home) == first
    assert keys.server_key_path(home).stat().st_mode & 0o777 == 0o600


def test_client_key_file_round_trip_and_checks(tmp_path: Path) -> None:
    pair, server = keys.new_pair(), keys.new_pair()
    path = tmp_path / "k" / "a.key"
    written = keys.ClientKeys("a:b:c", pair.public, pair.secret, server.public, "tcp://n:1")
    keys.write_client(path, written)
    assert path.stat().st_mode & 0o777 == 0o600
    assert keys.read_client(path) == written
    os.chmod(path, 0o640)  # a secret others can read is refused, as ssh does
    with pytest.raises(keys.KeyFileError, match="chmod 600"):
        keys.read_client(path)
    os.chmod(path, 0o600)
    path.write_text(path.read_text().replace(pair.secret, "short"))
    os.chmod(path, 0o600)
    with pytest.raises(keys.KeyFileError, match="secret_key"):
        keys.read_client(path)
    with pytest.raises(keys.KeyFileError, match="no key file"):
        keys.read_client(tmp_path / "missing.key")


def test_revoked_keys_containing_hash_are_read_whole(home: NodeHome) -> None:
    """Z85 keys may contain '#': it cannot start a comment in the revoked-keys file
    (a bug the integration test found: such a key was never revoked)."""
    tricky = pair_with("#").public
    plain = keys.new_pair().public
    assert keys.revoke(home, tricky, "a:b:c")
    assert not keys.revoke(home, tricky, "a:b:c")  # once
    assert keys.revoke(home, plain, "d:e:f")
    assert keys.read_revoked(keys.revoked_path(home)) == {tricky, plain}
    assert keys.revoked_path(home).stat().st_mode & 0o777 == 0o600


def test_key_ring_grants_each_key_its_own_id_only(tmp_path: Path) -> None:
    a, b, stranger = keys.new_pair().public, keys.new_pair().public, keys.new_pair().public
    ring = KeyRing({"a:x:y": a, "b:x:y": b}, tmp_path / "revoked")
    assert ring.grants(a, "a:x:y") == ""
    assert "granted a:x:y, not b:x:y" in ring.grants(a, "b:x:y")
    assert "porch keys new" in ring.grants(a, "b:x:y"), "the command that makes b:x:y a key"
    assert "not declared" in ring.grants(stranger, "a:x:y")
    assert ring.zap_allows("10.0.0.2", a)
    assert not ring.zap_allows("10.0.0.9", stranger)
    assert ring.refusals == 1 and list(ring.refused) == [("10.0.0.9", stranger)]


def test_key_ring_reloads_revocations_when_the_file_changes(tmp_path: Path) -> None:
    a = pair_with("#").public
    path = tmp_path / "revoked"
    ring = KeyRing({"a:x:y": a}, path)
    assert ring.reload() == frozenset()  # unchanged: nothing read
    path.write_text(f"# comment\n{a} a:x:y revoked now\n")
    assert ring.reload() == {a}
    assert not ring.zap_allows("h", a)
    assert "revoked" in ring.grants(a, "a:x:y")
    assert ring.reload() == frozenset()  # once


def test_key_ring_says_why_a_handshake_was_refused(tmp_path: Path) -> None:
    """The kernel's log line for a refused handshake: revoked or never declared."""
    a, stranger = keys.new_pair().public, keys.new_pair().public
    path = tmp_path / "revoked"
    path.write_text(f"{a} a:x:y\n")
    ring = KeyRing({"a:x:y": a}, path)
    assert ring.why_refused(a) == "revoked key"
    assert ring.why_refused(stranger) == "unknown key"


def test_key_ring_refusals_noted_are_bounded(tmp_path: Path) -> None:
    ring = KeyRing({}, tmp_path / "revoked")
    for i in range(MAX_NOTED * 4):
        ring.zap_allows(f"h{i}", "k")
    assert len(ring.refused) == MAX_NOTED and ring.refusals == MAX_NOTED * 4


@pytest.mark.parametrize(("entry", "problem"), [
    ('id = "a:b:c"\nkey = "nope"', "key must be a public CURVE key"),
    ('id = "a:b:c"\nkey = "{k}"\ncommand = "python x.py"', "runs on another machine"),
    ('id = "rpc:distro:sys"\nkey = "{k}"', "never runs on another machine"),
    ('id = "a:b:c"\nkey = "{k}"\n[[process]]\nid = "d:e:f"\nkey = "{k}"', "declared for a:b:c already"),
])
def test_config_refuses_bad_remote_entries(entry: str, problem: str) -> None:
    text = "[[process]]\n" + entry.replace("{k}", keys.new_pair().public) + "\n"
    with pytest.raises(config.ConfigError, match=problem):
        config.parse(text)


@pytest.mark.parametrize("listen", ["0.0.0.0:9555", "tcp://host", "tcp://:9555", "tcp://h:0",
                                    "tcp://h:70000", "tcp://a b:1", "ipc:///x"])
def test_config_refuses_bad_listen(listen: str) -> None:
    with pytest.raises(config.ConfigError, match="listen"):
        config.parse(f'[kernel]\nlisten = "{listen}"\n')


def test_config_remote_keys() -> None:
    k = keys.new_pair().public
    cfg = config.parse(f'[kernel]\nlisten = "tcp://0.0.0.0:9555"\n[[process]]\nid = "w:g:s"\n'
                       f'key = "{k}"\ncapabilities = ["http-server:distro:sys"]\n'
                       '[[process]]\nid = "l:g:s"\ncommand = "x"\n')
    assert cfg.remote_keys() == {"w:g:s": k}
    assert cfg.kernel.listen == "tcp://0.0.0.0:9555" and cfg.kernel.remote_queue == 1000
    assert config.parse(config.render("n.os", list(cfg.processes))).remote_keys() == {"w:g:s": k}


def test_stub_resolves_kernel_and_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PORCH_KERNEL", "PORCH_KEYS", "PORCH_PROCESS", "PORCH_HOME"):
        monkeypatch.delenv(var, raising=False)
    pair, server = keys.new_pair(), keys.new_pair()
    path = tmp_path / "w.key"
    keys.write_client(path, keys.ClientKeys("w:g:s", pair.public, pair.secret, server.public,
                                            "tcp://node:9555"))
    with pytest.raises(PorchError, match="on another machine"):
        resolve("w:g:s", None, "tcp://node:9555")
    # The key file alone names the process and the kernel.
    pid, where, client = resolve(None, None, None, path)
    assert (pid, where) == ("w:g:s", "tcp://node:9555") and client is not None
    assert client.public == pair.public
    monkeypatch.setenv("PORCH_KEYS", str(path))
    monkeypatch.setenv("PORCH_KERNEL", "tcp://other:1")
    assert resolve(None, None, None)[:2] == ("w:g:s", "tcp://other:1")
    # A home means that node's own socket: no keys, whatever the environment says.
    pid, where, client = resolve("l:g:s", tmp_path / "home", None)
    assert where.startswith("ipc://") and client is None


def test_the_key_files_live_where_the_docs_say(home: NodeHome) -> None:
    """docs/remote.md and README name these paths; `porch keys` and the kernel share them."""
    assert keys.server_key_path(home) == home.state_dir / "kernel.curve"
    assert keys.keys_dir(home) == home.state_dir / "keys"
    assert keys.revoked_path(home) == home.state_dir / "revoked-keys"


def test_a_key_is_shown_by_its_first_eight_characters() -> None:
    key = keys.new_pair().public
    assert keys.short(key) == key[:8] + "…"


@pytest.mark.parametrize("broken", ["public", "secret"])
def test_a_node_key_pair_with_either_half_broken_is_refused_naming_the_file(
        home: NodeHome, broken: str) -> None:
    good = keys.server_keys(home)
    path = keys.server_key_path(home)
    text = path.read_text()
    path.write_text(text.replace(good.public if broken == "public" else good.secret, "short"))
    with pytest.raises(keys.KeyFileError, match="not a CURVE key pair") as err:
        keys.server_keys(home)
    assert str(path) in str(err.value)


def test_a_node_without_a_key_pair_says_where_it_looked(home: NodeHome) -> None:
    with pytest.raises(keys.KeyFileError, match="no CURVE key pair yet") as err:
        keys.server_keys(home, create=False)
    assert str(keys.server_key_path(home)) in str(err.value)


def test_a_key_file_that_is_not_toml_is_refused_naming_it(home: NodeHome, tmp_path: Path) -> None:
    path = tmp_path / "x.key"
    path.write_text("this is = = not toml")
    os.chmod(path, 0o600)
    with pytest.raises(keys.KeyFileError, match="not a porch key file") as err:
        keys.read_client(path)
    assert str(path) in str(err.value)
    keys.server_key_path(home).write_text("[[[")
    with pytest.raises(keys.KeyFileError, match="not a porch key file"):
        keys.server_keys(home)


def test_a_key_file_that_cannot_be_read_says_the_os_reason(tmp_path: Path) -> None:
    with pytest.raises(keys.KeyFileError) as err:
        keys.read_client(tmp_path)  # a directory
    assert str(err.value) == f"cannot read the key file {tmp_path}: Is a directory"


@pytest.mark.parametrize("name", ["public_key", "secret_key", "server_key"])
def test_each_key_of_a_key_file_is_checked_by_name(tmp_path: Path, name: str) -> None:
    pair, server = keys.new_pair(), keys.new_pair()
    path = tmp_path / "a.key"
    keys.write_client(path, keys.ClientKeys("a:b:c", pair.public, pair.secret, server.public))
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith(name))
    path.write_text(text)
    os.chmod(path, 0o600)
    with pytest.raises(keys.KeyFileError, match=f"{name} is missing or not a Z85 CURVE key"):
        keys.read_client(path)


def test_a_key_file_without_process_or_kernel_names_neither(tmp_path: Path) -> None:
    pair, server = keys.new_pair(), keys.new_pair()
    path = tmp_path / "deep" / "er" / "a.key"  # folders made as needed
    keys.write_client(path, keys.ClientKeys("a:b:c", pair.public, pair.secret, server.public))
    text = path.read_text()
    assert "$PORCH_KEYS" in text and "docs/remote.md" in text, "the file says how to use it"
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("process")))
    os.chmod(path, 0o600)
    assert keys.read_client(path) == keys.ClientKeys("", pair.public, pair.secret, server.public, "")


def test_the_revoked_keys_file_skips_blanks_and_comments_and_takes_a_bare_key(tmp_path: Path) -> None:
    a, b, c = (keys.new_pair().public for _ in range(3))
    path = tmp_path / "revoked"
    path.write_text(f"# heading\n\n   \n{a}\n# {b} (commented out)\n#\n{c} a note\nnot-a-key note\n")
    assert keys.read_revoked(path) == {a, c}


def test_a_revocation_records_the_id_and_when(home: NodeHome) -> None:
    key = keys.new_pair().public
    keys.revoke(home, key, "a:b:c")
    last = keys.revoked_path(home).read_text().splitlines()[-1]
    assert re.fullmatch(re.escape(key) + r" a:b:c revoked \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", last), last

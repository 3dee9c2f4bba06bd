"""CURVE keys for processes on other machines (docs/remote.md).

A node that listens on TCP (`[kernel] listen`) proves itself to remote processes with
its key pair, and each remote process proves itself with its own; the handshake and
the encryption are libzmq's CURVE (no cryptography here: keys are made by
`zmq.curve_keypair`, written and read). Three files:

- <home>/state/kernel.curve (0600): the node's pair, made at first need (by the kernel
  or `porch keys new`). Its public half is what every remote process pins.
- a key file per remote process (0600, `porch keys new ID` writes it into
  <home>/state/keys/ or where --out says): the process's pair, the node's public key
  and the process id. It is copied to the remote machine and named by $PORCH_KEYS.
- <home>/state/revoked-keys (0600): public keys that are refused even though porch.toml
  declares them (`porch keys revoke ID`). The kernel reads it again when it changes:
  revoking needs no restart.

Keys are Z85 text (40 characters for 32 bytes), as libzmq and pyzmq write them.
"""

from __future__ import annotations

import os
import stat
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.utils import z85

from porch.files import write_atomic
from porch.node.home import NodeHome

ENV_KEYS = "PORCH_KEYS"
KEY_CHARS = 40


class KeyFileError(ValueError):
    """A key or key file that cannot be used; the message says which and why."""


def is_key(text: str) -> bool:
    """A Z85-encoded 32-byte CURVE key."""
    if len(text) != KEY_CHARS:
        return False
    try:
        return len(z85.decode(text.encode("ascii"))) == 32
    except (ValueError, UnicodeEncodeError, KeyError, IndexError, TypeError):
        return False


def short(key: str) -> str:
    """How logs and `porch keys list` name a key (its first characters)."""
    return key[:8] + "…"


@dataclass(frozen=True)
class KeyPair:
    public: str
    secret: str


@dataclass(frozen=True)
class ClientKeys:
    """What a remote process needs: who it is, its pair, and the node it trusts."""

    process: str
    public: str
    secret: str
    server: str
    kernel: str = ""  # the node's tcp:// endpoint, when `porch keys new --kernel` was given


def server_key_path(home: NodeHome) -> Path:
    return home.state_dir / "kernel.curve"


def keys_dir(home: NodeHome) -> Path:
    return home.state_dir / "keys"


def revoked_path(home: NodeHome) -> Path:
    return home.state_dir / "revoked-keys"


def new_pair() -> KeyPair:
    public, secret = zmq.curve_keypair()
    return KeyPair(public.decode("ascii"), secret.decode("ascii"))


def server_keys(home: NodeHome, create: bool = True) -> KeyPair:
    """The node's key pair, made (0600) the first time it is needed."""
    path = server_key_path(home)
    try:
        data = _read_toml(path)
    except FileNotFoundError:
        if not create:
            raise KeyFileError(f"the node has no CURVE key pair yet ({path})") from None
        pair = new_pair()
        home.ensure()
        # Written beside, then linked into place: of two makers at once (the kernel and
        # `porch keys new`) one pair wins and both use it.
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        write_atomic(tmp, (f"# the node's CURVE key pair (docs/remote.md); keep it secret\n"
                           f'public_key = "{pair.public}"\nsecret_key = "{pair.secret}"\n').encode())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        return server_keys(home, create=False)
    pair = KeyPair(str(data.get("public_key", "")), str(data.get("secret_key", "")))
    if not (is_key(pair.public) and is_key(pair.secret)):
        raise KeyFileError(f"{path}: not a CURVE key pair (public_key, secret_key in Z85)")
    return pair


def write_client(path: Path, keys: ClientKeys) -> None:
    """A remote process's key file (0600: it holds the process's secret key)."""
    lines = [
        f"# porch key file of the remote process {keys.process}: its CURVE key pair and",
        "# the node's public key. Secret: keep it 0600, copy it only to the machine that",
        "# runs the process, point $PORCH_KEYS at it (docs/remote.md).",
        f'process = "{keys.process}"',
        f'public_key = "{keys.public}"',
        f'secret_key = "{keys.secret}"',
        f'server_key = "{keys.server}"',
    ]
    if keys.kernel:
        lines.append(f'kernel = "{keys.kernel}"')
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, ("\n".join(lines) + "\n").encode())


def read_client(path: str | os.PathLike[str]) -> ClientKeys:
    """A key file written by `porch keys new`, checked: readable by its owner only
    (like ssh, a secret others can read is refused) and holding valid keys."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        data = _read_toml(p)
    except FileNotFoundError:
        raise KeyFileError(f"no key file at {p}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file {p}: {exc.strerror or exc}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise KeyFileError(f"{p} holds a secret key but others may read it: chmod 600 {p}")
    keys = ClientKeys(str(data.get("process", "")), str(data.get("public_key", "")),
                      str(data.get("secret_key", "")), str(data.get("server_key", "")),
                      str(data.get("kernel", "")))
    for name, value in (("public_key", keys.public), ("secret_key", keys.secret),
                        ("server_key", keys.server)):
        if not is_key(value):
            raise KeyFileError(f"{p}: {name} is missing or not a Z85 CURVE key")
    return keys


def _read_toml(path: Path) -> dict[str, object]:
    text = path.read_text()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KeyFileError(f"{path}: not a porch key file: {exc}") from None


# ---------------------------------------------------------------------------- revocation


def read_revoked(path: Path) -> frozenset[str]:
    """The revoked public keys: the first word of each line (what follows is a note).
    A line starting with "# " is a comment; '#' alone cannot mark one: Z85 keys use it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return frozenset()
    keys = set()
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] == "#":
            continue
        if is_key(words[0]):
            keys.add(words[0])
    return frozenset(keys)


def revoke(home: NodeHome, key: str, note: str) -> bool:
    """Add key to the revoked keys; False if it was revoked already."""
    path = revoked_path(home)
    if key in read_revoked(path):
        return False
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = "# public keys the kernel refuses (porch keys revoke), one a line, then a note;\n" \
              "# read again when it changes\n"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_atomic(path, (old + f"{key} {note} revoked {stamp}\n").encode())
    return True

"""`porch keys new | list | revoke`: the CURVE keys of processes on other machines.

    porch keys new ID [--kernel tcp://NODE:9555] [--out FILE] [--force]
    porch keys list
    porch keys revoke ID [--key KEY]

`new` writes a key pair for one remote process id into a key file (0600; default
<home>/state/keys/<id>.key) and prints the porch.toml entry that grants it; `revoke`
adds a key to <home>/state/revoked-keys, which a running kernel reads again within a
heartbeat interval (docs/remote.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from porch.address import InvalidProcessId, ProcessId, is_reserved
from porch.node import config as node_config
from porch.node import keys
from porch.node.home import NodeHome


def _fail(message: str, code: int = 1) -> int:
    print(f"porch: {message}", file=sys.stderr)
    return code


def key_file(home: NodeHome, process_id: str) -> Path:
    return keys.keys_dir(home) / (process_id.replace(":", "_") + ".key")


def _home(args: argparse.Namespace) -> NodeHome | None:
    home = NodeHome.resolve(args.home)
    if not home.exists():
        _fail(f"no node home at {home.root} (no porch.toml there); `porch up` creates one, "
              "or give --home", 2)
        return None
    home.ensure()
    return home


def cmd_new(args: argparse.Namespace) -> int:
    try:
        pid = str(ProcessId.parse(args.id))
    except InvalidProcessId as exc:
        return _fail(f"invalid process id: {exc}", 2)
    if is_reserved(pid):
        return _fail(f"{pid} is an id of the node's own services: it never runs on another "
                     "machine", 2)
    if args.kernel:
        problem = node_config.tcp_endpoint_problem(args.kernel)
        if problem:
            return _fail(f"--kernel: {problem}", 2)
    home = _home(args)
    if home is None:
        return 2
    out = Path(args.out) if args.out else key_file(home, pid)
    if out.exists() and not args.force:
        return _fail(f"{out} exists already; --force writes a new pair there (the old key "
                     "stops working once porch.toml has the new one)", 2)
    try:
        config = node_config.load(home.config_path)
        server = keys.server_keys(home)
    except (node_config.ConfigError, keys.KeyFileError) as exc:
        return _fail(str(exc), 2)
    pair = keys.new_pair()
    try:
        keys.write_client(out, keys.ClientKeys(pid, pair.public, pair.secret, server.public,
                                               args.kernel or ""))
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc.strerror or exc}")
    declared = next((p for p in config.processes if p.id == pid), None)
    caps = list(declared.capabilities) if declared else []
    print(f"porch: wrote the key pair of {pid} to {out} (0600: it holds the secret key).")
    print("Copy it to the machine that runs the process, and nowhere else.")
    print()
    if declared is not None and declared.key:
        print(f"{pid} is in {home.config_path} already: replace its key with")
        print(f'key = "{pair.public}"')
    else:
        print(f"Add to {home.config_path}:")
        print()
        print("[[process]]")
        print(f'id = "{pid}"')
        print(f'key = "{pair.public}"')
        print("capabilities = [" + ", ".join(f'"{c}"' for c in caps) + "]")
    print()
    print(f"The node's public key (in the key file too): {server.public}")
    if not config.kernel.listen:
        print('The node does not listen yet: add [kernel] listen = "tcp://0.0.0.0:9555" too.')
    print("Then `porch up` applies it (the kernel restarts to read the keys).")
    print("On the other machine: PORCH_KERNEL=tcp://<this node>:<port> PORCH_KEYS=<the key file> "
          "python your_app.py  (docs/remote.md)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    home = _home(args)
    if home is None:
        return 2
    try:
        config = node_config.load(home.config_path)
    except node_config.ConfigError as exc:
        return _fail(str(exc), 2)
    revoked = keys.read_revoked(keys.revoked_path(home))
    try:
        server = keys.server_keys(home, create=False).public
    except keys.KeyFileError:
        server = "(none yet: made by the kernel or `porch keys new`)"
    print(f"node public key  {server}")
    print(f"listen           {config.kernel.listen or '(not set: [kernel] listen)'}")
    remote = [p for p in config.processes if p.key]
    if not remote:
        print("no remote processes in porch.toml (`porch keys new ID`)")
    width = max([len(p.id) for p in remote] + [10])
    for p in remote:
        state = "revoked" if p.key in revoked else "granted"
        path = key_file(home, p.id)
        local = f"key file {path}" if path.exists() else "key file not here"
        print(f"  {p.id:<{width}} {keys.short(p.key)}  {state:<8} {local}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    home = _home(args)
    if home is None:
        return 2
    try:
        config = node_config.load(home.config_path)
    except node_config.ConfigError as exc:
        return _fail(str(exc), 2)
    key = args.key or ""
    if key and not keys.is_key(key):
        return _fail("--key must be a public CURVE key in Z85 (40 characters)", 2)
    if not key:
        declared = next((p for p in config.processes if p.id == args.id and p.key), None)
        if declared is not None:
            key = declared.key
        else:
            path = key_file(home, args.id)
            try:
                key = keys.read_client(path).public
            except keys.KeyFileError:
                return _fail(f"{args.id} has no key in porch.toml nor a key file at {path}; "
                             "give the public key with --key", 2)
    if not keys.revoke(home, key, args.id):
        print(f"porch: the key {keys.short(key)} of {args.id} was revoked already")
        return 0
    print(f"porch: revoked the key {keys.short(key)} of {args.id} "
          f"({keys.revoked_path(home)}).")
    print("A running kernel refuses it within a heartbeat interval (about a second), ends "
          "the registration and closes its connections; no restart needed.")
    print(f"To grant {args.id} again, give it a new pair: `porch keys new {args.id} --force`, "
          "then put its key in porch.toml and `porch up`.")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               home_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    keys_p = sub.add_parser("keys", help="keys of processes on other machines (new, list, revoke)",
                            description="The CURVE keys with which processes on other "
                            "machines connect to this node's kernel over TCP "
                            "([kernel] listen; docs/remote.md).")
    ksub = keys_p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    new = ksub.add_parser("new", help="make a key pair for a remote process id",
                          description="Write a key file for process ID (its key pair and the "
                          "node's public key, 0600) and print the porch.toml entry that "
                          "grants it.")
    new.add_argument("id", metavar="ID", help="the process id, name:package:publisher")
    new.add_argument("--out", help="where to write the key file (default "
                     "<home>/state/keys/<id>.key)")
    new.add_argument("--kernel", help="the node's endpoint as the remote machine sees it, "
                     "tcp://HOST:PORT (written into the key file)")
    new.add_argument("--force", action="store_true", help="overwrite an existing key file")
    new.set_defaults(func=cmd_new)
    lst = ksub.add_parser("list", help="list the remote processes and their keys",
                          description="List the remote processes porch.toml declares, their "
                          "keys and whether they are revoked.")
    lst.set_defaults(func=cmd_list)
    rev = ksub.add_parser("revoke", help="refuse a remote process's key from now on",
                          description="Add the key of process ID (from porch.toml, else its "
                          "key file here) to <home>/state/revoked-keys; a running kernel "
                          "refuses it within a heartbeat interval and drops its connections.")
    rev.add_argument("id", metavar="ID", help="the process id")
    rev.add_argument("--key", help="the public key to revoke (default: the one porch.toml "
                     "declares for ID)")
    rev.set_defaults(func=cmd_revoke)
    for p in (new, lst, rev):
        home_arg(p)

"""What the http-server keeps on disk in <home>/state: port, bindings, static content,
password hash and JWT secret. Writes are atomic (temp file + rename); secrets are 0600.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
from pathlib import Path

import argon2

from porch.http_server.bindings import BindingTable

log = logging.getLogger("porch.http_server")


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class BindingStore:
    """bindings.json plus content-addressed static files in static/."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "bindings.json"
        self.static_dir = state_dir / "static"
        self.static_dir.mkdir(mode=0o700, exist_ok=True)

    def save(self, table: BindingTable) -> None:
        data, blobs = table.to_data()
        for digest, body in blobs.items():
            blob_path = self.static_dir / digest
            if not blob_path.exists():
                write_atomic(blob_path, body)
        write_atomic(self.path, json.dumps(data, separators=(",", ":")).encode())

    def load(self) -> BindingTable:
        if not self.path.exists():
            return BindingTable()
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s): starting with no bindings", self.path, exc)
            return BindingTable()
        wanted = {e["static"]["sha256"] for e in data.get("http", []) if e.get("static")}
        blobs = {}
        for digest in wanted:
            try:
                blobs[digest] = (self.static_dir / digest).read_bytes()
            except OSError:
                log.error("static content %s is missing; its binding is dropped", digest)
        for stale in self.static_dir.iterdir():
            if stale.name not in wanted and not stale.name.startswith("."):
                stale.unlink(missing_ok=True)
        return BindingTable.from_data(data, blobs)


class NodeSecrets:
    """The node password's argon2id hash and the JWT signing secret."""

    def __init__(self, state_dir: Path) -> None:
        self.password_path = state_dir / "password.argon2"
        self.jwt_path = state_dir / "jwt.secret"

    def has_password(self) -> bool:
        return self.password_path.exists()

    def set_password(self, password: str) -> None:
        if not password:
            raise ValueError("the node password must not be empty")
        write_atomic(self.password_path, argon2.PasswordHasher().hash(password).encode())

    def password_hash(self) -> str:
        return self.password_path.read_text().strip()

    def jwt_secret(self) -> bytes:
        """Created once; changing it logs everyone out."""
        if not self.jwt_path.exists():
            write_atomic(self.jwt_path, secrets.token_bytes(32))
        return self.jwt_path.read_bytes()


def generate_password() -> str:
    return secrets.token_urlsafe(12)

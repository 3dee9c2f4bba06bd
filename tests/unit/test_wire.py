"""The committed generated modules match the .proto files, and the C backend is used."""

import importlib.util
import sys
import tempfile
from pathlib import Path

import pytest

from porch.wire import check_backend, protobuf_backend

ROOT = Path(__file__).resolve().parents[2]


def test_generated_modules_are_fresh() -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) regenerates the wire")
    spec = importlib.util.spec_from_file_location("regen_wire", ROOT / "scripts" / "regen_wire.py")
    assert spec and spec.loader
    regen = importlib.util.module_from_spec(spec)
    sys.modules["regen_wire"] = regen
    spec.loader.exec_module(regen)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = regen.generate(Path(tmp))
        assert fresh, "no .proto compiled"
        for path in fresh:
            committed = ROOT / "services" / "porch" / "wire" / path.name
            assert committed.exists(), f"{path.name} is not committed"
            assert committed.read_text() == path.read_text(), (
                f"services/porch/wire/{path.name} is stale: run python scripts/regen_wire.py"
            )


def test_services_run_on_the_upb_backend() -> None:
    assert protobuf_backend() == "upb"
    assert check_backend("test")

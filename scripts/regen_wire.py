"""Regenerate the committed protobuf modules in services/porch/wire from proto/.

Run after editing a .proto:  python scripts/regen_wire.py
tests/unit/test_wire_fresh.py fails when the committed modules are stale.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTO_DIR = PROTO_ROOT / "porch" / "v1"
WIRE_DIR = ROOT / "services" / "porch" / "wire"


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto into out_dir (flat: kernel_pb2.py, http_pb2.py, ...).

    The files import nothing from each other, so the generated modules can live in
    porch.wire while the descriptors keep their unique names "porch/v1/*.proto".
    """
    from grpc_tools import protoc  # dev dependency, only needed to regenerate

    protos = sorted(PROTO_DIR.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            *[str(p) for p in protos],
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed: " + " ".join(args))
        written = []
        for produced in sorted((Path(tmp) / "porch" / "v1").iterdir()):
            target = out_dir / produced.name
            shutil.copyfile(produced, target)
            written.append(target)
    return written


if __name__ == "__main__":
    for path in generate(WIRE_DIR):
        print(f"wrote {path.relative_to(ROOT)}")
    sys.exit(0)

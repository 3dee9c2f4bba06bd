"""Run every benchmark in bench/ and print their figures under one header.

    python bench/run.py               # every bench/bench_*.py
    python bench/run.py --only kernel # one bench (bench_kernel.py); repeatable
    python bench/run.py --quick       # a fast smoke run (sets PORCH_BENCH_QUICK=1)
    python bench/run.py --list

Each bench is a module `bench/bench_NAME.py` with a `main()` that prints its own lines;
adding a file is all it takes to be run here. Each runs in its own Python process, one
after the other, so one bench's sockets, threads or event loop never load another's
figures, and a bench that crashes is reported without stopping the others. Quick mode
reaches main() as the environment variable PORCH_BENCH_QUICK=1.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
QUICK_ENV = "PORCH_BENCH_QUICK"

RUNNER = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "import importlib; importlib.import_module(sys.argv[2]).main()"
)


def discover() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def _git_rev() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def header(quick: bool) -> str:
    import google.protobuf
    import zmq
    from google.protobuf.internal import api_implementation

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    backend = api_implementation.Type()
    warn = "" if backend == "upb" else "  <-- NOT upb: figures are ~20x too slow"
    lines = [
        f"porch bench  {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  "
        f"git {_git_rev()}{'  (quick)' if quick else ''}",
        f"  machine   {_cpu_model()}, {os.cpu_count()} cores ({usable} usable), "
        f"load {load}, {platform.system()} {platform.release()}",
        f"  python    {platform.python_implementation()} {platform.python_version()}",
        f"  zmq       pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}",
        f"  protobuf  {google.protobuf.__version__}, backend {backend}{warn}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    benches = discover()
    parser = argparse.ArgumentParser(description="Run porch's benchmarks side by side.")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help=f"run only this bench (of: {', '.join(benches) or 'none'}); repeatable")
    parser.add_argument("--quick", action="store_true", help="fast smoke run of each bench")
    parser.add_argument("--list", action="store_true", help="list the benches and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(benches))
        return 0
    chosen = list(benches)
    if args.only:
        unknown = [n for n in args.only if n.removeprefix("bench_") not in benches]
        if unknown:
            parser.error(f"no bench {', '.join(unknown)} (have: {', '.join(benches)})")
        chosen = [n.removeprefix("bench_") for n in args.only]

    print(header(args.quick), flush=True)
    env = dict(os.environ)
    if args.quick:
        env[QUICK_ENV] = "1"
    failed = []
    for name in chosen:
        print(f"\n== {name}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run([sys.executable, "-c", RUNNER, str(BENCH_DIR), f"bench_{name}"],
                            cwd=REPO, env=env).returncode
        took = time.monotonic() - t0
        if rc != 0:
            failed.append(name)
            print(f"   ({name} FAILED with exit code {rc} after {took:.0f} s)", flush=True)
        else:
            print(f"   ({name}: {took:.0f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

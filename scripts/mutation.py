"""Mutation testing of the pure cores: one command, a score per module.

    python scripts/mutation.py [module ...] [--jobs N] [--survivors] [--again] [--fail-under PCT]

Modules are dotted names (`porch.throttle`) or paths (`services/porch/throttle.py`);
without any, every module in `[tool.mutmut] only_mutate` (pyproject.toml) is run. Each
mutant is run against the unit tests that reach it (tests/unit only: in-process, fast).
The table counts a mutant listed in tests/mutation_exclusions.toml (equivalent or
message-only, with the reason) as excluded when no test kills it. docs/mutation-testing.md
says how to read the result and how to add a module.

Why a staged copy: mutmut 3 names a module after its path below the project root or
src/ (`services/porch/throttle.py` would be `services.porch.throttle`, while the tests
import `porch.throttle`), so it runs in build/mutation, where src/ links to services/
and tests/ to tests/. What it mutates is therefore this checkout's code, never an
installed copy: mutmut puts its mutated src/ first on sys.path, and the script puts it
on PYTHONPATH for the processes a test starts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / "build" / "mutation"
EXCLUSIONS = ROOT / "tests" / "mutation_exclusions.toml"
SRC = "services"  # what the stage calls src/

KILLED = {"killed", "timeout"}  # a timeout: the mutant made a test hang, and it was caught


def configured() -> dict[str, Any]:
    """[tool.mutmut] of pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        conf: dict[str, Any] = tomllib.load(f)["tool"]["mutmut"]
    return conf


def module_of(staged_path: str) -> str:
    """src/porch/http_client/policy.py -> porch.http_client.policy"""
    return staged_path.removeprefix("src/").removesuffix(".py").replace("/", ".")


def resolve(names: list[str], known: list[str]) -> list[str]:
    """The staged paths (src/...) of the modules asked for; a module not configured yet
    may be named too (to try it before adding it to only_mutate)."""
    out = []
    for name in names:
        if name.endswith(".py"):
            rel = Path(name).resolve().relative_to(ROOT / SRC)
            path = f"src/{rel.as_posix()}"
        else:
            path = "src/" + name.replace(".", "/") + ".py"
        if not (STAGE / path).exists() and not (ROOT / SRC / path.removeprefix("src/")).exists():
            sys.exit(f"no such module: {name}")
        if path not in known:
            print(f"note: {module_of(path)} is not in [tool.mutmut] only_mutate", file=sys.stderr)
        out.append(path)
    return out


def toml_value(value: Any) -> str:
    """Strings, numbers, booleans and lists of them: their JSON is valid TOML."""
    return json.dumps(value, ensure_ascii=False)


def stage(paths: list[str], mutmut_conf: dict[str, Any], fresh: bool) -> None:
    """build/mutation: src -> services, tests -> tests, and pyproject.toml as it is (the
    tests may read any of it: pytest's settings, import-linter's contracts...) but for
    [tool.mutmut], which names only the modules asked for."""
    STAGE.mkdir(parents=True, exist_ok=True)
    for link, target in (("src", ROOT / SRC), ("tests", ROOT / "tests")):
        p = STAGE / link
        if not p.is_symlink():
            p.symlink_to(os.path.relpath(target, STAGE), target_is_directory=True)
    if fresh:
        shutil.rmtree(STAGE / "mutants", ignore_errors=True)
    kept, skipping = [], False
    for line in (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        if re.match(r"\[", line):  # a table header ends the one before
            skipping = line.strip() == "[tool.mutmut]"
        if not skipping:
            kept.append(line)
    conf = {**mutmut_conf, "only_mutate": paths}
    lines = ["# Written by scripts/mutation.py for this run; edit the project's pyproject.toml.",
             *kept, "", "[tool.mutmut]", *(f"{k} = {toml_value(v)}" for k, v in conf.items())]
    (STAGE / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_mutmut(jobs: int, names: list[str], verbose: bool) -> int:
    # Processes a unit test starts import the mutated copy too, not an installed porch.
    # (The directory must exist before Python starts, or its import cache skips it.)
    mutated = STAGE / "mutants" / "src"
    mutated.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MUTANT_UNDER_TEST"}
    env["PYTHONPATH"] = str(mutated)
    exe = Path(sys.executable).with_name("mutmut")
    cmd = [str(exe) if exe.exists() else "mutmut", "run", "--max-children", str(jobs), *names]
    if verbose:
        return subprocess.run(cmd, cwd=STAGE, env=env, check=False).returncode
    log = STAGE / "mutmut.log"  # its progress is a spinner: kept out of the terminal
    print(f"running mutmut ({log.relative_to(ROOT)}) ...", flush=True)
    with open(log, "wb") as out:
        rc = subprocess.run(cmd, cwd=STAGE, env=env, stdout=out, stderr=subprocess.STDOUT,
                            check=False).returncode
    if rc != 0:
        text = log.read_text(errors="replace").replace("\r", "\n")
        print("\n".join(line for line in text.splitlines() if line.strip())[-4000:], file=sys.stderr)
    return rc


def statuses(path: str) -> dict[str, str]:
    """mutant name -> mutmut's status, from the results of the last run."""
    from mutmut.stats import status_by_exit_code

    meta = STAGE / "mutants" / f"{path}.meta"
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: status_by_exit_code[code] for name, code in codes.items()}


def diff(name: str, path: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    cwd = os.getcwd()
    os.chdir(STAGE)
    try:
        return get_diff_for_mutant(name, path=path)
    finally:
        os.chdir(cwd)


def changed_lines(patch: str) -> tuple[str, str]:
    """(the lines a mutation removes, the lines it adds), each stripped, joined by newlines."""
    body = [ln for ln in patch.splitlines() if not ln.startswith(("---", "+++"))]
    return ("\n".join(ln[1:].strip() for ln in body if ln.startswith("-")),
            "\n".join(ln[1:].strip() for ln in body if ln.startswith("+")))


def function_of(name: str) -> str:
    """porch.link.codec.xǁSessionǁ_command__mutmut_45 -> _command: what an
    exclusion is matched on with its lines, so it survives a module or class rename."""
    from mutmut.mutation.trampoline_templates import CLASS_NAME_SEPARATOR as SEP

    last = name.rpartition(".")[2].partition("__mutmut_")[0]
    return last.rpartition(SEP)[2] if SEP in last else last.removeprefix("x_")


@dataclass
class Row:
    module: str
    mutants: int = 0
    killed: int = 0
    excluded: int = 0
    survivors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        counted = self.mutants - self.excluded
        return 100.0 * self.killed / counted if counted else 100.0


# (function, removed lines, added lines) -> the entries that say so (the same line may
# appear twice in a function, mutated the same way: two entries, one key).
Exclusions = dict[tuple[str, str, str], list[dict[str, str]]]


def tally(path: str, exclusions: Exclusions, used: set[str]) -> Row:
    """Count one module's mutants. An exclusion applies to a survivor with the same
    function name and the same removed and added lines (its id is only the reference)."""
    row = Row(module_of(path))
    by_id = {e["mutant"]: key for key, entries in exclusions.items() for e in entries}
    for name, status in sorted(statuses(path).items()):
        row.mutants += 1
        if status in KILLED:
            row.killed += 1
            # (the same id with other lines is another mutant: the entry's moved)
            if name in by_id and (function_of(name), *changed_lines(diff(name, path))) == by_id[name]:
                row.notes.append(f"{name} is excluded but killed now: drop it from the exclusions")
                used.add(name)
            continue
        entries = exclusions.get((function_of(name), *changed_lines(diff(name, path))), [])
        if entries:
            row.excluded += 1
            ids = [e["mutant"] for e in entries]
            if name in ids:
                used.add(name)
            else:
                unused = [i for i in ids if i not in used]
                used.add((unused or ids)[0])
                row.notes.append(f"exclusion {(unused or ids)[0]} is now {name}: update its id")
        else:
            row.survivors.append(name if status == "survived" else f"{name} ({status})")
    return row


def load_exclusions() -> Exclusions:
    if not EXCLUSIONS.exists():
        return {}
    with open(EXCLUSIONS, "rb") as f:
        entries = tomllib.load(f).get("exclude", [])
    out: Exclusions = {}
    for e in entries:
        missing = {"mutant", "original", "mutation", "kind", "why"} - e.keys()
        if missing or e["kind"] not in ("equivalent", "message"):
            sys.exit(f"{EXCLUSIONS.name}: bad entry {e!r} (needs mutant, original, mutation, "
                     "kind = equivalent|message, why)")
        out.setdefault((function_of(e["mutant"]), e["original"], e["mutation"]), []).append(e)
    return out


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def draft(name: str, path: str) -> str:
    """An exclusions entry for a survivor, to fill in (kind, why) or to delete."""
    original, mutation = changed_lines(diff(name, path))
    return "\n".join(["[[exclude]]", f"mutant = {toml_string(name)}", f"original = {toml_string(original)}",
                      f"mutation = {toml_string(mutation)}", 'kind = "TODO equivalent | message"',
                      'why = "TODO"', ""])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="dotted names or paths (default: all configured)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the run (default 10)")
    parser.add_argument("--again", action="store_true",
                        help="keep the last run's results and re-run only what was not killed")
    parser.add_argument("--report", action="store_true", help="only print the last run's table")
    parser.add_argument("--verbose", action="store_true", help="show mutmut's own output")
    parser.add_argument("--survivors", action="store_true", help="print the diff of every survivor")
    parser.add_argument("--draft", action="store_true",
                        help="print an exclusions entry to fill in for every survivor")
    parser.add_argument("--fail-under", type=float, default=None, metavar="PCT",
                        help="exit 1 when a module scores below PCT")
    args = parser.parse_args()

    mutmut_conf = configured()
    known = list(mutmut_conf.get("only_mutate", []))
    paths = resolve(args.modules, known) if args.modules else known
    exclusions = load_exclusions()

    if not args.report:
        os.nice(args.nice)
        stage(paths, mutmut_conf, fresh=not args.again)
        names: list[str] = []
        if args.again:
            # (excluded ones too: a test may kill them now)
            names = [n for p in paths for n, s in statuses(p).items() if s not in KILLED]
            if not names:
                print("no survivors to re-run")
        if not args.again or names:
            rc = run_mutmut(args.jobs, names, args.verbose)
            if rc != 0:
                print(f"mutmut exited with {rc}", file=sys.stderr)
                return rc

    used: set[str] = set()
    rows = [tally(p, exclusions, used) for p in paths]
    width = max([len("module"), *(len(r.module) for r in rows)])
    print()
    print(f"{'module':<{width}}  mutants  killed  survived  excluded   score")
    for r in rows:
        print(f"{r.module:<{width}}  {r.mutants:7}  {r.killed:6}  {len(r.survivors):8}  {r.excluded:8}"
              f"  {r.score:5.1f} %")
    print("(score = killed / (mutants - excluded); excluded: survivors listed in "
          f"{EXCLUSIONS.relative_to(ROOT)})")
    modules = {r.module for r in rows}
    for e in (e for entries in exclusions.values() for e in entries):
        if e["mutant"] not in used and any(e["mutant"].startswith(m + ".") for m in modules):
            print(f"note: exclusion {e['mutant']} matches no mutant any more: remove it")
    for r in rows:
        path = next(p for p in paths if module_of(p) == r.module)
        for note in r.notes:
            print(f"note: {note}")
        for s in r.survivors:
            name = s.split(" ", 1)[0]
            if args.survivors:
                print(f"\n# {s}\n{diff(name, path)}")
            if args.draft:
                print(draft(name, path))
    if args.fail_under is not None and any(r.score < args.fail_under for r in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

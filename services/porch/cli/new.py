"""`porch new NAME`: a ready app directory (Kinode's `kit new`), and putting an app's
entry into a node's porch.toml.

The app is made from the templates in porch/cli/templates/: the process (blocking or
asyncio) with a public and an authenticated API path, optionally a page (ui/) in the
look of porch's own pages, a test that starts a throwaway node and calls the app, and
process.toml, the app's [[process]] entry without its `directory` (which depends on
where the app lives: it is added when the entry goes into a porch.toml).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from porch.address import InvalidProcessId, ProcessId
from porch.node import config as node_config
from porch.node.home import NodeHome

ENTRY = "process.toml"
DEFAULT_PUBLISHER = "local"
_FILES = {  # file of the app -> its template
    "test_app.py": "test_app.py.tmpl",
    ENTRY: "process.toml.tmpl",
    "README.md": "README.md.tmpl",
}
_UI_FILES = {"ui/index.html": "ui/index.html.tmpl", "ui/style.css": "ui/style.css.tmpl",
             "ui/app.js": "ui/app.js.tmpl"}


class NewAppError(ValueError):
    """The app cannot be made or added; the message says why."""


@dataclass(frozen=True)
class NewApp:
    directory: Path
    spec: node_config.ProcessSpec  # its porch.toml entry, directory included
    files: tuple[str, ...]


def template(name: str) -> str:
    return resources.files("porch.cli").joinpath("templates", name).read_text()


def create(name: str, parent: Path, *, publisher: str = DEFAULT_PUBLISHER, ui: bool = False,
           use_asyncio: bool = False) -> NewApp:
    """Write the app `name` into parent/name (which must not exist): all of it or, on
    any failure, nothing."""
    process_id = f"{name}:{name}:{publisher}"
    try:
        ProcessId.parse(process_id)
    except InvalidProcessId as exc:
        raise NewAppError(f"{name!r} cannot name an app (its process id would be "
                          f"{process_id!r}: {exc})") from None
    target = parent / name
    if target.exists() or target.is_symlink():
        raise NewAppError(f"{target} already exists: choose another name or directory")
    files = {"app.py": "app_async.py.tmpl" if use_asyncio else "app_blocking.py.tmpl", **_FILES}
    if ui:
        files.update(_UI_FILES)
    values = {"{{id}}": process_id, "{{name}}": name,
              "{{ui_row}}": "; `ui/` is its page, at `/` under the app" if ui else ""}
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
    try:
        for dest, source in files.items():
            text = template(source)
            for key, value in values.items():
                text = text.replace(key, value)
            path = staging / dest
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide it from a node run by another user
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return NewApp(target.resolve(), entry(target), tuple(sorted(files)))


def entry(app_dir: Path) -> node_config.ProcessSpec:
    """The app's porch.toml entry: its process.toml, with `directory` the app's."""
    path = app_dir / ENTRY
    try:
        parsed = node_config.parse(path.read_text(), str(path))
    except OSError as exc:
        raise NewAppError(f"{app_dir} has no readable {ENTRY} ({exc.strerror}): is it an app "
                          "made by `porch new`?") from None
    except node_config.ConfigError as exc:
        raise NewAppError(str(exc)) from None
    if len(parsed.processes) != 1:
        raise NewAppError(f"{path} must hold exactly one [[process]] table")
    return dataclasses.replace(parsed.processes[0], directory=str(app_dir.resolve()))


def add(home: NodeHome, spec: node_config.ProcessSpec) -> bool:
    """Put `spec` into the home's porch.toml (made if the home has none); False if it
    is there already. Refused when porch.toml declares the id for another directory."""
    path = home.config_path
    if not path.exists():
        home.ensure()
        path.write_text(node_config.render(node_config.default_node_name(home), [spec]))
        return True
    try:
        config = node_config.load(path)
    except node_config.ConfigError as exc:
        raise NewAppError(f"{exc}\nporch: fix porch.toml first") from None
    same = next((p for p in config.processes if p.id == spec.id), None)
    if same is not None:
        where = (home.root / same.directory).resolve() if same.directory else None
        if where == Path(spec.directory).resolve():
            return False
        raise NewAppError(f"{path} already declares {spec.id} (directory {same.directory or 'none'}): "
                          "remove that entry or choose another name")
    text = path.read_text()
    separator = "" if text.endswith("\n\n") or not text else "\n" if text.endswith("\n") else "\n\n"
    with path.open("a") as f:
        f.write(separator + node_config.render_process(spec))
    node_config.load(path)  # what was written reads back
    return True

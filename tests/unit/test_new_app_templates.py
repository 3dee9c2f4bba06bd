"""`porch new` and `porch dev`, the pure parts: the app made from the templates, its
entry going into porch.toml, and the file watching (issue 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from porch.cli import dev, new
from porch.cli.foreground import Follower, LogFollower
from porch.http_server import pages
from porch.node import config as node_config
from porch.node.home import NodeHome

REPO = Path(__file__).resolve().parents[2]


def test_new_writes_a_whole_app_with_its_id_everywhere(tmp_path: Path) -> None:
    app = new.create("notes", tmp_path, ui=True)
    assert app.spec.id == "notes:notes:local" and app.spec.directory == str(tmp_path / "notes")
    assert app.spec.capabilities == ("http-server:distro:sys",) and app.spec.command == "python app.py"
    for name in app.files:
        text = (tmp_path / "notes" / name).read_text()
        assert "{{" not in text, name
    assert "notes:notes:local" in (tmp_path / "notes" / "app.py").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["notes"], "no staging directory left"
    with pytest.raises(new.NewAppError, match="already exists"):
        new.create("notes", tmp_path)
    with pytest.raises(new.NewAppError, match="cannot name an app"):
        new.create("Notes", tmp_path)


def test_add_appends_the_entry_once_and_refuses_another_directory(tmp_path: Path) -> None:
    home = NodeHome(tmp_path / "h")
    spec = new.create("a1", tmp_path).spec
    assert new.add(home, spec) is True  # no porch.toml yet: made, with a node name of its own
    config = node_config.load(home.config_path)
    assert config.node == node_config.default_node_name(home) and config.processes == (spec,)
    assert new.add(home, spec) is False
    home.config_path.write_text('node = "x.os"')  # no newline at the end
    assert new.add(home, spec) is True
    assert node_config.load(home.config_path).processes == (spec,)
    elsewhere = new.create("a1", tmp_path / "h").spec
    with pytest.raises(new.NewAppError, match="already declares a1:a1:local"):
        new.add(home, elsewhere)


def test_default_node_names_differ_per_home(tmp_path: Path) -> None:
    one, two = NodeHome(tmp_path / "a"), NodeHome(tmp_path / "b")
    assert node_config.default_node_name(one) == node_config.default_node_name(NodeHome(tmp_path / "a"))
    assert node_config.default_node_name(one) != node_config.default_node_name(two)
    node_config.parse(f'node = "{node_config.default_node_name(one)}"')  # a valid name


def test_snapshot_sees_the_apps_files_and_not_caches(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("x")
    for skipped in ("__pycache__/app.pyc", ".git/HEAD", ".venv/x.py", "app.py.swp", ".hidden"):
        (tmp_path / skipped).parent.mkdir(exist_ok=True)
        (tmp_path / skipped).write_text("x")
    (tmp_path / "ui").mkdir()
    (tmp_path / "ui" / "index.html").write_text("x")
    before = dev.snapshot(tmp_path)
    assert sorted(before) == ["app.py", "ui/index.html"]
    (tmp_path / "ui" / "index.html").write_text("xy")
    (tmp_path / "new.py").write_text("")
    os.unlink(tmp_path / "app.py")
    assert dev.changed(before, dev.snapshot(tmp_path)) == ["app.py", "new.py", "ui/index.html"]


def test_a_log_follower_prints_only_what_is_new(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("old\n")
    follow = LogFollower(log)
    assert follow.new_text() == ""
    with log.open("a") as f:
        f.write("new\n")
    assert follow.new_text() == "new\n"
    log.write_text("r\n")  # rotated, shorter: read from its start
    assert follow.new_text() == "r\n"


def test_apps_and_examples_share_porchs_colours() -> None:
    """The app stylesheet of `porch new` and the examples is one file's text, and its
    colours are those of porch's own pages (issue 14 item 6: the demo clashed)."""
    css = new.template("ui/style.css.tmpl")
    for example in ("hello", "chat"):
        assert (REPO / "examples" / example / "ui" / "style.css").read_text() == css, example
    for colour in ("#2f6f4f", "#f6f6f3", "#6fbf8f", "#151515", "prefers-color-scheme: dark"):
        assert colour in css and colour in pages._STYLE, colour


def test_the_foreground_says_unexpected_exits_once_a_minute_and_never_asked_for_stops(
        tmp_path: Path) -> None:
    """issue 14 item 7: supervisord is silent on the console; its news is said by porch."""
    (tmp_path / "app-x-y-z.log").write_text("starting\nboom: missing SETTING\n")
    follower = Follower({"app-x-y-z": "x:y:z"}, tmp_path)
    log = ("2026-01-01 00:00:00,000 INFO spawned: 'app-x-y-z' with pid 9\n"
           "2026-01-01 00:00:01,000 WARN stopped: app-a-b-c (terminated by SIGTERM)\n"
           "2026-01-01 00:00:01,000 INFO exited: app-e-b-c (exit status 0; expected)\n"
           "2026-01-01 00:00:02,000 WARN exited: app-x-y-z (exit status 3; not expected)\n")
    said = follower.news(log, now=100.0)
    assert said[0] == ("porch: x:y:z exited (exit status 3); supervisord starts it "
                       "again; the end of its log:")
    assert "    | boom: missing SETTING" in said and len([s for s in said if "exited" in s]) == 1
    assert follower.news(log, now=130.0) == [], "not again within a minute"
    gave_up = "2026-01-01 00:01:00,000 INFO gave up: app-x-y-z entered FATAL state, too many\n"
    assert "gave up" in follower.news(gave_up, now=161.0)[0]
    follower.quiet("app-q-q-q", 200.0)
    assert follower.news("WARN exited: app-q-q-q (terminated by SIGKILL; not expected)\n", 210.0) == []

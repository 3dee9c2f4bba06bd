import configparser
from pathlib import Path

from porch.cli.supervise import program_name, render
from porch.node.config import parse
from porch.node.home import NodeHome


def test_rendered_config_has_one_program_per_service_and_process(tmp_path: Path) -> None:
    home = NodeHome(tmp_path / "h")
    cfg = parse('node = "n.os"\n[[process]]\nid = "hello:hello:sys"\ncommand = "python app.py --pct 50%"\n'
                'environment = { GREETING = "say \\"hi\\"" }\n')
    text = render(home, cfg, foreground=True, extra_args={"http-server": ["--port", "9000"]})
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    programs = [s.split(":", 1)[1] for s in parser.sections() if s.startswith("program:")]
    assert programs[0] == "kernel"
    assert "app-hello-hello-sys" in programs
    app = parser["program:app-hello-hello-sys"]
    assert app["command"].endswith("-m porch.cli.launch --home " + str(home.root) + " --relay hello:hello:sys")
    assert 'PORCH_PROCESS="hello:hello:sys"' in app["environment"]
    assert "GREETING" not in app["environment"], "user environment stays out of supervisord's parser"
    assert parser["program:kernel"]["command"].endswith(f"-m porch.kernel --home {home.root}")
    assert parser["supervisord"]["nodaemon"] == "true"
    assert parser["unix_http_server"]["chmod"] == "0700"


def test_program_names_accept_process_ids() -> None:
    cfg = parse('[[process]]\nid = "hello:hello:sys"\ncommand = "x"\n')
    assert program_name(cfg, "kernel") == "kernel"
    assert program_name(cfg, "hello:hello:sys") == "app-hello-hello-sys"


def test_launch_runs_the_command_with_its_environment(tmp_path: Path) -> None:
    import subprocess
    import sys

    home = NodeHome(tmp_path / "h")
    home.ensure()
    script = tmp_path / "show.py"
    script.write_text("import os; print(os.environ['TRICKY'], os.environ['PORCH_PROCESS'], os.getcwd())")
    home.config_path.write_text(
        '[[process]]\nid = "env:demo:sys"\n'
        f'command = "{sys.executable} {script}"\n'
        f'directory = "{tmp_path}"\n'
        "environment = { TRICKY = \"it's \\\"quoted\\\", 100% and , commas\" }\n")
    out = subprocess.run([sys.executable, "-m", "porch.cli.launch", "--home", str(home.root), "env:demo:sys"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"it's \"quoted\", 100% and , commas env:demo:sys {tmp_path}"

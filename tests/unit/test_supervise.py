import configparser
from pathlib import Path

from porch.node.config import parse
from porch.node.home import NodeHome
from porch.node.supervise import program_name, render


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
    assert "50%%" in app["command"], "a literal % must be escaped for supervisord"
    assert 'PORCH_PROCESS="hello:hello:sys"' in app["environment"]
    assert parser["supervisord"]["nodaemon"] == "true"
    assert parser["unix_http_server"]["chmod"] == "0700"


def test_program_names_accept_process_ids() -> None:
    cfg = parse('[[process]]\nid = "hello:hello:sys"\ncommand = "x"\n')
    assert program_name(cfg, "kernel") == "kernel"
    assert program_name(cfg, "hello:hello:sys") == "app-hello-hello-sys"

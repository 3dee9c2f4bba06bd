"""`porch` mistakes a new user makes get one clear message and a non-zero exit, never a
traceback, and nothing is started (or created) on the way."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from porch.node.home import NodeHome

# ---------------------------------------------------------------------------- supervisord login


def test_supervisord_config_holds_a_per_home_login_in_private_files(tmp_path: Path) -> None:
    from porch.node import supervise
    from porch.node.config import parse

    homes = [NodeHome(tmp_path / name) for name in ("a", "b")]
    for h in homes:
        h.ensure()
        supervise.write(h, parse(""), foreground=True)
    logins = [supervise.credentials(h) for h in homes]
    assert logins[0] and logins[1] and logins[0] != logins[1], "one login per home"
    for h, login in zip(homes, logins, strict=True):
        assert login is not None
        text = h.supervisord_conf.read_text()
        server = text.split("[unix_http_server]", 1)[1].split("[supervisord]", 1)[0]
        ctl = text.split("[supervisorctl]", 1)[1]
        for section in (server, ctl):
            assert f"username={login[0]}" in section and f"password={login[1]}" in section
        for path in (h.supervisor_secret, h.supervisord_conf):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # rendering again keeps the login (a running supervisord knows only the first)
    supervise.write(homes[0], parse(""), foreground=False)
    assert supervise.credentials(homes[0]) == logins[0]
    assert os.stat(homes[0].supervisord_conf).st_mode & 0o077 == 0

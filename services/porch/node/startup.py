"""What every service does first: log to stdout, check the protobuf backend, open the
node home and read its config, turning a bad home or config into one clear log line,
log in the config's format from then on, and take the node's service token (so its
stub may register a reserved id)."""

from __future__ import annotations

import logging
import signal

from porch.node.config import ConfigError, NodeConfig, load_home
from porch.node.home import NodeHome
from porch.node.lifetime import die_with_parent, parent_is_supervisord
from porch.node.logs import setup_logging
from porch.node.service_token import export
from porch.node.starts import record_start
from porch.wire import check_backend


def start_service(name: str, home_arg: str | None,
                  program: str | None = None) -> tuple[NodeHome, NodeConfig] | None:
    """(home, config), or None after logging why the service cannot start (exit 2).
    `program`: what this start counts as (porch.node.starts), default `name`; the
    http-server's worker counts as "http-server.worker"."""
    if parent_is_supervisord():  # the node is gone with supervisord: so is this service
        die_with_parent(signal.SIGTERM)
    setup_logging(name)
    log = logging.getLogger(f"porch.{name.replace('-', '_')}")
    check_backend(name, log)
    home = NodeHome.resolve(home_arg)
    try:
        home.ensure()
        config = load_home(home)
    except (ConfigError, ValueError) as exc:
        log.error("%s", exc)
        return None
    if config.logging.format != "text":
        setup_logging(name, config.logging.format)
    record_start(home, program or name)
    export(home)
    return home, config

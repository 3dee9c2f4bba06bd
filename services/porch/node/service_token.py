"""The node's service token: what lets the services the node started, and nobody
else, register the reserved process ids (package distro:sys: http-server, http-client,
rpc).

Without it, any process that connects first (say while `porch restart http-server`
runs) could register http-server:distro:sys and be sent every HTTP request. A fresh
token is written to <home>/run/service.token (0600, in the 0700 run/) at every
`porch up`, or by the kernel when it starts without one (a node run by hand). The
kernel compares what a registration carries with it; the services put it in their
environment at start ($PORCH_SERVICE_TOKEN, which the stub sends in its Register);
user processes are started without it. A process running as the node's Unix user can
read the node's home, this file included: the token separates porch processes by
the protocol, not by the OS (SECURITY.md).
"""

from __future__ import annotations

import os
import secrets

from porch.files import write_atomic
from porch.node.home import NodeHome

ENV_SERVICE_TOKEN = "PORCH_SERVICE_TOKEN"


def renew(home: NodeHome) -> str:
    """A fresh token for a node starting now."""
    token = secrets.token_urlsafe(32)
    write_atomic(home.service_token, token.encode())
    return token


def read_or_create(home: NodeHome) -> str:
    """The kernel's token: $PORCH_SERVICE_TOKEN, else the home's, else a new one."""
    env = os.environ.get(ENV_SERVICE_TOKEN)
    if env:
        return env
    try:
        token = home.service_token.read_text().strip()
    except FileNotFoundError:
        token = ""
    return token or renew(home)


def export(home: NodeHome) -> None:
    """A service at start: have the stub send the node's token when it registers."""
    if os.environ.get(ENV_SERVICE_TOKEN):
        return
    try:
        token = home.service_token.read_text().strip()
    except FileNotFoundError:
        return  # the kernel makes one at its start; until then nothing can register
    if token:
        os.environ[ENV_SERVICE_TOKEN] = token

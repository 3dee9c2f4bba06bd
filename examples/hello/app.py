"""hello:hello:sys — the smallest porch app: a public path, an authenticated path, and a
static UI.

    GET /hello:hello:sys/            the UI (static, served by the http-server itself)
    GET /hello:hello:sys/api/hello   public: "hello, <name>" (?name=...)
    GET /hello:hello:sys/api/me      needs the login cookie: what the server told us

Run under a node (`porch up --demo`), or by hand (e.g. in a debugger): declare it in
the node's porch.toml without a `command` (the entry grants its capabilities), then
    PORCH_HOME=<home> PORCH_PROCESS=hello:hello:sys python examples/hello/app.py
"""

from __future__ import annotations

import json
from pathlib import Path

import porch
from porch.http.server import HttpBindingConfig, HttpResponse, HttpServer, IncomingHttpRequest

UI = Path(__file__).parent / "ui"


def handle(req: IncomingHttpRequest) -> HttpResponse:
    if req.bound_path.endswith("/api/hello"):
        name = req.query_params.get("name", "world")
        return HttpResponse(200).header("Content-Type", "text/plain; charset=utf-8").body(f"hello, {name}\n")
    if req.bound_path.endswith("/api/me"):
        seen = {
            "method": req.method,
            "url": req.url,
            "bound_path": req.bound_path,
            "from": req.source_socket_addr,
            "user_agent": req.headers.get("user-agent"),
        }
        return HttpResponse(200).header("Content-Type", "application/json").body(json.dumps(seen))
    return HttpResponse(404).body("no such page\n")


def main() -> None:
    proc = porch.Process()
    server = HttpServer(proc)
    server.bind_http_path("/api/hello", HttpBindingConfig(authenticated=False))
    server.bind_http_path("/api/me", HttpBindingConfig(authenticated=True))
    server.serve_ui(UI, roots=["/"], config=HttpBindingConfig(authenticated=False))
    print(f"{proc.our}: bound {sorted(server.http_paths)}", flush=True)
    while True:
        msg = proc.await_message()
        if not server.handle_request(msg, handle):
            print(f"ignored a message from {msg.source}", flush=True)


if __name__ == "__main__":
    main()

"""chat:chat:sys — a chat room in the browser (the equivalent of Kinode's
`kit new my-chat --ui`): a process serving a small web UI and a WebSocket.

    GET /chat:chat:sys/            the UI (static; login required)
    WS  /chat:chat:sys/ws          the room: send {"author", "text"}, receive the same
    GET /chat:chat:sys/history     the last 100 messages as JSON

Every message typed in one browser appears in every other. Run under a node
(`porch up --demo`), or by hand: declare it in porch.toml without a `command` (the
entry grants its capabilities), then
    PORCH_HOME=<home> PORCH_PROCESS=chat:chat:sys python examples/chat/app.py
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path

import porch
from porch.http.server import (
    HttpBindingConfig,
    HttpResponse,
    HttpServer,
    IncomingHttpRequest,
    WsBindingConfig,
    send_ws_push,
)

UI = Path(__file__).parent / "ui"
MAX_TEXT = 2000
history: deque[dict[str, object]] = deque(maxlen=100)


def handle_http(req: IncomingHttpRequest) -> HttpResponse:
    if req.bound_path.endswith("/history"):
        return HttpResponse(200).header("Content-Type", "application/json").body(json.dumps(list(history)))
    return HttpResponse(404).body("not here\n")


def main() -> None:
    proc = porch.Process()
    server = HttpServer(proc)
    server.serve_ui(UI, roots=["/"], config=HttpBindingConfig(authenticated=True))
    server.bind_http_path("/history", HttpBindingConfig(authenticated=True))
    # direct: this process holds its clients' sockets (docs/websockets.md): frames go
    # browser <-> this process, without the http-server or the kernel in between.
    server.bind_ws_path("/ws", WsBindingConfig(authenticated=True, direct=True))
    print(f"{proc.our}: chat room ready", flush=True)

    def on_open(path: str, channel_id: int) -> None:
        send_ws_push(proc, channel_id, "Text", json.dumps({"history": list(history)}).encode())

    def on_frame(channel_id: int, kind: str, blob: porch.Blob | None) -> None:
        if kind != "Text" or blob is None:
            return
        try:
            incoming = json.loads(blob.bytes)
            author = str(incoming.get("author") or "anonymous")[:40]
            text = str(incoming["text"])[:MAX_TEXT]
        except (ValueError, KeyError, AttributeError):
            return
        if not text.strip():
            return
        message = {"author": author, "text": text, "at": time.time()}
        history.append(message)
        server.ws_push_all_channels("/ws", "Text", json.dumps({"message": message}).encode())

    while True:
        msg = proc.await_message()
        server.handle_request(msg, handle_http, on_frame, on_open=on_open)


if __name__ == "__main__":
    main()

"""A user process for http-server tests (run with Node.spawn(pid, source)).

Binds what $BINDINGS (JSON list) says, prints READY, then answers every HTTP request
with a JSON echo of what the server told it. Query parameters steer the reply:
  do=sleep&s=N      answer after N seconds
  do=exit           die (os._exit) without answering
  do=garbage        answer with bytes that are not an HttpResponse
  do=reply&status=N&h=Name:value&h=...&body=...   answer exactly that
  do=big&n=N        answer N bytes
"""

import base64
import json
import os
import time

import porch
from porch.http.server import HttpBindingConfig, HttpResponse, HttpServer
from porch.wire import http_pb2

proc = porch.Process()
server = HttpServer(proc)
for b in json.loads(os.environ.get("BINDINGS", "[]")):
    static = porch.Blob(b["static"].encode(), b.get("mime")) if "static" in b else None
    cfg = HttpBindingConfig(authenticated=b.get("authenticated", False), local_only=b.get("local_only", False),
                            secure_subdomain=b.get("secure", False), static_content=static,
                            timeout=b.get("timeout"))
    server.bind_http_path(b["path"], cfg)
print("READY", flush=True)

while True:
    msg = proc.await_message()
    request = http_pb2.HttpServerRequest.FromString(msg.body)
    if request.WhichOneof("request") != "http":
        continue
    req = request.http
    query = {}
    for q in req.query_params:
        query.setdefault(q.name, []).append(q.value)
    do = query.get("do", [""])[-1]
    if do == "sleep":
        print("sleeping", flush=True)  # tests wait for this, not a guess
        time.sleep(float(query["s"][-1]))
    elif do == "exit":
        os._exit(1)
    elif do == "garbage":
        proc.respond(msg, b"\xff\xff\xff\x00 not protobuf")
        continue
    elif do == "big":
        size = int(query["n"][-1])
        proc.respond(msg, HttpResponse(200).to_proto(), blob=b"b" * size)
        continue
    elif do == "reply":
        resp = HttpResponse(int(query.get("status", ["200"])[-1]))
        for h in query.get("h", []):
            name, _, value = h.partition(":")
            resp.header(name, value)
        proc.respond(msg, resp.to_proto(), blob=query.get("body", [""])[-1].encode())
        continue
    echo = {
        "method": req.method,
        "url": req.url,
        "bound_path": req.bound_path,
        "source_socket_addr": req.source_socket_addr if req.HasField("source_socket_addr") else None,
        "headers": [[h.name, h.value] for h in req.headers],
        "url_params": dict(req.url_params),
        "query": [[q.name, q.value] for q in req.query_params],
        "body": base64.b64encode(msg.blob.bytes if msg.blob else b"").decode(),
        "has_blob": msg.blob is not None,
        "me": proc.our,
    }
    resp = HttpResponse(200).header("Content-Type", "application/json")
    proc.respond(msg, resp.to_proto(), blob=json.dumps(echo).encode())

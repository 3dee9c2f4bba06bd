"""docs/deploy.md's nginx configuration, run (issue 14 item 5): nginx with a self-signed
certificate in front of a real node (kernel, http-server, apps), as the page says.
Through it: a login sets a Secure cookie, an authenticated page is served, a WebSocket
works, an app sees the client's address, the login limit counts each client apart,
and local-only endpoints refuse proxied requests.

The configuration is the page's own block (`<!-- deploy-test: nginx -->`), with the
example's certificate paths, port and upstream replaced; nginx runs in a temporary
prefix (its own pid, logs and temp files) on free ports. Skipped without nginx or
openssl, unless $PORCH_REQUIRE_NGINX=1 (set by .ci/run, which installs them)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from support.node import Node, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "docs" / "deploy.md"
APP = (REPO / "tests" / "support" / "http_app.py").read_text()
CHAT = REPO / "examples" / "chat" / "app.py"
NODE = "edge.os"
COOKIE = f"kinode-auth_{NODE}"
PASSWORD = "behind the proxy"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def needs(tool: str, found: object) -> None:
    if found:
        return
    message = f"{tool} is not installed (apt-get install nginx-light openssl; .ci/run does)"
    if os.environ.get("PORCH_REQUIRE_NGINX") == "1":
        pytest.fail(message)
    pytest.skip(message)


def documented_config() -> str:
    """The nginx block of docs/deploy.md."""
    text = DEPLOY.read_text()
    found = re.search(r"<!-- deploy-test: nginx -->\s*```nginx\n(.*?)```", text, re.S)
    assert found, "docs/deploy.md lost its tested nginx block"
    return found[1]


def replace(text: str, old: str, new: str) -> str:
    assert old in text, f"docs/deploy.md's nginx block no longer has {old!r}: update this test"
    return text.replace(old, new)


@dataclass
class Edge:
    node: Node
    base: str  # https://localhost:<nginx port>
    direct: str  # http://127.0.0.1:<porch port>
    ca: str  # the self-signed certificate, for verification
    port: int

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def request(self, method: str, path: str, *, source: str = "127.0.0.1", body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One HTTPS request to nginx from the loopback address `source` (the whole of
        127/8 is this machine: each address is another "client" for nginx)."""
        conn = http.client.HTTPSConnection("localhost", self.port, timeout=15, context=self.context(),
                                           source_address=(source, 0))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


def start_nginx(work: Path, porch_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port, plain = free_port(), free_port()
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    site = documented_config()
    site = replace(site, "listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    site = replace(site, "listen 80;", f"listen 127.0.0.1:{plain};")
    site = replace(site, "/etc/ssl/node.example.com/fullchain.pem", str(cert))
    site = replace(site, "/etc/ssl/node.example.com/privkey.pem", str(key))
    site = replace(site, "proxy_pass http://127.0.0.1:8080;", f"proxy_pass http://127.0.0.1:{porch_port};")
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / temp).mkdir()
    # The rest of what /etc/nginx/nginx.conf would hold, all inside the temporary prefix.
    conf = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {work}/access.log;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
{site}
}}
"""
    (work / "nginx.conf").write_text(conf)
    proc = subprocess.Popen([str(NGINX), "-p", str(work), "-c", str(work / "nginx.conf"),
                             "-e", str(work / "error.log"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def listening() -> bool:
        assert proc.poll() is None, (work / "error.log").read_text() if (work / "error.log").exists() \
            else proc.stderr.read().decode() if proc.stderr else "nginx exited"
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, 15, 0.1, "nginx to listen")
    return proc, port


@pytest.fixture(scope="module")
def edge() -> Iterator[Edge]:
    needs("nginx", NGINX)
    needs("openssl", shutil.which("openssl"))
    grants = "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
                     for pid in ("echo:app:sys", "chat:chat:sys"))
    node = Node(f'node = "{NODE}"\n[http_server]\nhost = "127.0.0.1"\nhttps = true\n'
                f'trusted_proxies = ["127.0.0.1", "::1"]\nlogin_attempts_per_minute = 3\n{grants}')
    nginx: subprocess.Popen[bytes] | None = None
    try:
        node.start("kernel")
        porch_port = free_port()
        node.start("http-server", "--port", str(porch_port), env={"PORCH_PASSWORD": PASSWORD})
        node.spawn("echo:app:sys", APP, BINDINGS=json.dumps([
            {"path": "/private", "authenticated": True},
            {"path": "/local", "local_only": True}]))
        node.spawn("chat:chat:sys", f"import runpy, sys\nsys.argv = [{str(CHAT)!r}]\n"
                   f"runpy.run_path({str(CHAT)!r}, run_name='__main__')\n")
        node.wait_log("echo:app:sys", "READY")
        node.wait_log("chat:chat:sys", "chat room ready")
        work = node.dir / "nginx"
        work.mkdir()
        nginx, port = start_nginx(work, porch_port)
        yield Edge(node, f"https://localhost:{port}", f"http://127.0.0.1:{porch_port}",
                   str(work / "cert.pem"), port)
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)  # graceful stop of master and worker
            try:
                nginx.wait(15)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait(10)
        node.close()


def login(edge: Edge, source: str = "127.0.0.1", password: str = PASSWORD) -> tuple[int, dict[str, str], bytes]:
    return edge.request("POST", "/login", source=source, body=json.dumps({"password": password}).encode(),
                        headers={"Content-Type": "application/json"})


def token(edge: Edge) -> str:
    status, headers, _ = login(edge)
    assert status == 200
    return headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]


def test_login_through_the_proxy_sets_a_secure_cookie_that_opens_pages(edge: Edge) -> None:
    status, headers, body = login(edge)
    assert status == 200, body
    cookie = headers["set-cookie"]
    assert cookie.startswith(COOKIE + "=")
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path"} <= attributes, cookie
    page = requests.get(edge.base + "/echo:app:sys/private", timeout=15, verify=edge.ca,
                        cookies={COOKIE: token(edge)})
    assert page.status_code == 200, page.text
    assert page.json()["url"] == "http://localhost/echo:app:sys/private"
    assert requests.get(edge.base + "/echo:app:sys/private", timeout=15, verify=edge.ca).status_code == 401
    browser = requests.get(edge.base + "/echo:app:sys/private", headers={"Accept": "text/html"},
                           timeout=15, verify=edge.ca)
    assert browser.status_code == 200 and "Log in" in browser.text


def test_an_app_sees_the_clients_address_in_x_real_ip_and_x_forwarded_for(edge: Edge) -> None:
    status, _, body = edge.request("GET", "/echo:app:sys/private", source="127.0.0.2",
                                   headers={"Cookie": f"{COOKIE}={token(edge)}",
                                            "X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"})
    assert status == 200, body
    seen = json.loads(body)
    headers = {name: value for name, value in seen["headers"]}
    assert headers["x-real-ip"] == "127.0.0.2", "nginx overwrites what the client wrote"
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.2", "nginx appends the peer"
    assert headers["x-forwarded-proto"] == "https"
    assert seen["source_socket_addr"].startswith("127.0.0.1:"), "the TCP peer: nginx, as in Kinode"


def test_a_websocket_through_the_proxy(edge: Edge) -> None:
    url = f"wss://localhost:{edge.port}/chat:chat:sys/ws"
    cookie = {"Cookie": f"{COOKIE}={token(edge)}"}
    origin = f"https://localhost:{edge.port}"
    with connect(url, ssl=edge.context(), additional_headers={**cookie, "Origin": origin},
                 open_timeout=15) as ws:
        assert "history" in json.loads(ws.recv(timeout=15))
        ws.send(json.dumps({"author": "edge", "text": "through nginx"}))
        message = json.loads(ws.recv(timeout=15))["message"]
        assert (message["author"], message["text"]) == ("edge", "through nginx")
    with pytest.raises(InvalidStatus) as refused:  # another site's page: refused as ever
        connect(url, ssl=edge.context(), additional_headers={**cookie, "Origin": "https://evil.example"},
                open_timeout=15)
    assert refused.value.response.status_code == 403


def test_the_login_limit_counts_each_client_behind_the_proxy(edge: Edge) -> None:
    """trusted_proxies: nginx's X-Forwarded-For names the client, so one client's
    failures hold back that client only, not everyone behind the proxy."""
    codes = [login(edge, "127.0.0.3", "wrong")[0] for _ in range(4)]
    assert codes == [401, 401, 401, 429], codes
    status, headers, _ = login(edge, "127.0.0.3")
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert login(edge, "127.0.0.4")[0] == 200, "another client behind the same proxy"


def test_local_only_endpoints_refuse_what_comes_through_the_proxy(edge: Edge) -> None:
    cookie = {"Cookie": f"{COOKIE}={token(edge)}"}
    assert edge.request("GET", "/echo:app:sys/local", headers=cookie)[0] == 403
    assert edge.request("GET", "/http-server:distro:sys/status")[0] == 403
    rpc = edge.request("POST", "/rpc:distro:sys/message", body=b'{"process": "echo:app:sys", "body": "x"}',
                       headers={"Content-Type": "application/json"})
    assert rpc[0] == 403
    assert requests.get(edge.direct + "/http-server:distro:sys/status", timeout=10).status_code == 200, \
        "from the node's own machine, without the proxy, they answer"


def test_nothing_reaches_porch_around_the_proxy(edge: Edge) -> None:
    """host = "127.0.0.1": porch does not listen on the machine's other addresses."""
    from support.node import non_loopback_ip

    ip = non_loopback_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback address")
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(5)
        s.connect((ip, int(edge.direct.rsplit(":", 1)[1])))

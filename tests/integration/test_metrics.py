"""The node's figures, scraped from the real endpoint of running nodes after real
traffic (issue 13): exact counter deltas for HTTP, WebSockets, the kernel's routing and
the http-client; JSON logs, the access log and the request id the app sees; who may
scrape; a process killed -9 and restarted (state and restart count); the node page's
restart button and the refusals around it; porch status, top and logs --all; and
[metrics] enabled = false."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

import porch
from porch.http.client import send_request_await_response
from porch.http_server.rpc_auth import RpcToken
from support.http_test_server import TestServer
from support.node import Node, SupervisedNode, free_port, non_loopback_ip, porch_cli, wait_for

APP = "metered:test:sys"
CALLER = "caller:test:sys"
PASSWORD = "metrics password"
METRICS = "/http-server:distro:sys/metrics"
PROCESSES = "/http-server:distro:sys/processes"
RESTART = "/http-server:distro:sys/restart"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"

# A user process with two HTTP paths (one answers 500) and a WebSocket that echoes.
# It logs through porch.setup_logging, and can wait before it connects (START_DELAY),
# so that a restart shows on the node page for a while.
APP_SOURCE = """
import logging, os, time
import porch
from porch.http.server import (HttpBindingConfig, HttpResponse, HttpServer, WsBindingConfig,
                               send_ws_push)
porch.setup_logging()
time.sleep(float(os.environ.get("START_DELAY", "0")))
proc = porch.Process()
server = HttpServer(proc)
server.bind_http_path("/api", HttpBindingConfig(authenticated=False))
server.bind_http_path("/fail", HttpBindingConfig(authenticated=False))
server.bind_ws_path("/ws", WsBindingConfig(authenticated=False))
server.bind_ws_path("/dws", WsBindingConfig(authenticated=False, direct=True))
log = logging.getLogger("app")
print("READY", flush=True)


def handle(req):
    log.info("handling %s", req.bound_path)
    if req.bound_path.endswith("/fail"):
        return HttpResponse(500).body(b"failed on purpose")
    return HttpResponse(200).header("Content-Type", "text/plain").body(req.request_id)


def ws(channel, kind, blob):
    send_ws_push(proc, channel, kind, blob.bytes)


while True:
    msg = proc.await_message()
    server.handle_request(msg, handle, ws)
"""


def scrape(base: str, token: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = requests.get(base + METRICS, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def delta(before: Any, after: Any, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


class Site:
    def __init__(self, extra: str = "", delay: str = "0") -> None:
        grants = (f'[[process]]\nid = "{APP}"\ncapabilities = ["http-server:distro:sys"]\n'
                  f'[[process]]\nid = "{CALLER}"\ncapabilities = ["http-client:distro:sys"]\n')
        self.node = Node(f'node = "metrics.os"\n{extra}{grants}')
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.node.start("kernel")
        self.node.start("http-server", "--port", str(self.port), env={"PORCH_PASSWORD": PASSWORD})
        self.node.start("http-client")
        # As the launcher would under `porch up` with [logging] format = "json".
        fmt = "json" if 'format = "json"' in extra else "text"
        self.node.spawn(APP, APP_SOURCE, PORCH_LOG_FORMAT=fmt, START_DELAY=delay)
        self.node.wait_log(APP, "READY")
        self.token = RpcToken(self.node.home.state_dir, "metrics.token").get()  # made here if not yet

    def scrape(self) -> Any:
        return scrape(self.base, self.token)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site('[logging]\nformat = "json"\naccess_log = true\n')
    try:
        yield s
    finally:
        s.node.close()


def test_http_requests_are_counted_exactly(site: Site) -> None:
    """Issue 13 item 1: requests by process, bound path, method and status class, bytes,
    both latency histograms, and the kernel's messages per source and target, moved by
    exactly the traffic sent."""
    before = site.scrape()
    bodies = []
    for _ in range(7):
        answer = requests.get(f"{site.base}/{APP}/api", timeout=10)
        assert answer.status_code == 200
        bodies.append(answer.content)
    for _ in range(3):
        answer = requests.post(f"{site.base}/{APP}/api", data=b"12345", timeout=10)
        assert answer.status_code == 200
        bodies.append(answer.content)
    for _ in range(2):
        answer = requests.get(f"{site.base}/{APP}/fail", timeout=10)
        assert answer.status_code == 500
        bodies.append(answer.content)
    answer = requests.request("BREW", f"{site.base}/{APP}/api", timeout=10)
    assert answer.status_code == 200
    bodies.append(answer.content)
    final = site.scrape()
    api, fail = f"/{APP}/api", f"/{APP}/fail"
    requests_total = "porch_http_requests_total"
    assert delta(before, final, requests_total, process=APP, bound_path=api, method="GET", status="2xx") == 7
    assert delta(before, final, requests_total, process=APP, bound_path=api, method="POST", status="2xx") == 3
    assert delta(before, final, requests_total, process=APP, bound_path=fail, method="GET", status="5xx") == 2
    assert delta(before, final, requests_total, process=APP, bound_path=api, method="OTHER", status="2xx") == 1
    assert delta(before, final, "porch_http_request_bytes_total", process=APP) == 15
    assert delta(before, final, "porch_http_response_bytes_total", process=APP) == sum(map(len, bodies))
    assert delta(before, final, "porch_http_request_duration_seconds_count", process=APP) == 13
    assert delta(before, final, "porch_http_process_duration_seconds_count", process=APP) == 13
    assert delta(before, final, "porch_http_request_duration_seconds_bucket", process=APP, le="+Inf") == 13
    routed = "porch_kernel_messages_routed_total"
    assert delta(before, final, routed, source="http-server:distro:sys", target=APP) == 13
    assert delta(before, final, routed, source=APP, target="http-server:distro:sys") == 13
    assert value(final, "porch_process_up", process=APP) == 1
    assert value(final, "porch_process_state", process=APP, state="running") == 1
    assert value(final, "porch_scrape_source_up", source="kernel") == 1
    assert value(final, "porch_scrape_source_up", source="http-client") == 1
    assert value(final, "porch_process_resident_memory_bytes", process=APP) > 0
    assert value(final, "porch_kernel_pending_requests") >= 0
    assert ("porch_process_cpu_seconds_total", frozenset({("process", "kernel:distro:sys")})) in final


def test_websockets_are_counted_and_closes_named(site: Site) -> None:
    """Issue 13 item 1: open sockets, messages each way, bytes, closes by reason."""
    before = site.scrape()
    ws = connect(f"ws://127.0.0.1:{site.port}/{APP}/ws", open_timeout=10, legacy=True)
    try:
        for i in range(4):
            ws.send(f"frame {i}")
            assert ws.recv(timeout=10) == f"frame {i}"
        during = site.scrape()
        assert value(during, "porch_websockets_open", process=APP) == 1
    finally:
        ws.close()
    wait_for(lambda: value(site.scrape(), "porch_websockets_open", process=APP) == 0, 15,
             what="the socket to be counted closed")
    after = site.scrape()
    messages = "porch_websocket_messages_total"
    assert delta(before, after, messages, process=APP, direction="in") == 4
    assert delta(before, after, messages, process=APP, direction="out") == 4
    assert delta(before, after, "porch_websocket_bytes_total", process=APP, direction="in") == 4 * 7
    assert delta(before, after, "porch_websocket_closes_total", process=APP, reason="client") == 1


def test_messages_of_sockets_the_app_holds_are_counted(site: Site) -> None:
    """Sockets of a direct binding (the app holds them, docs/websockets.md): the stub
    reports what went over them (about once a second, and when one ends) and the
    figures move by exactly that, the close counted under its reason."""
    before = site.scrape()
    ws = connect(f"ws://127.0.0.1:{site.port}/{APP}/dws", open_timeout=10, legacy=True)
    try:
        for i in range(5):
            ws.send(f"frame {i}")
            assert ws.recv(timeout=10) == f"frame {i}"
        messages = "porch_websocket_messages_total"
        wait_for(lambda: delta(before, site.scrape(), messages, process=APP, direction="in") == 5, 15,
                 what="the held socket's messages counted while it is open")
        assert value(site.scrape(), "porch_websockets_open", process=APP) == 1
    finally:
        ws.close()
    wait_for(lambda: value(site.scrape(), "porch_websockets_open", process=APP) == 0, 15,
             what="the socket to be counted closed")
    after = site.scrape()
    assert delta(before, after, messages, process=APP, direction="in") == 5
    assert delta(before, after, messages, process=APP, direction="out") == 5
    assert delta(before, after, "porch_websocket_bytes_total", process=APP, direction="out") == 5 * 7
    assert delta(before, after, "porch_websocket_closes_total", process=APP, reason="client") == 1


def test_http_client_and_kernel_send_errors_are_counted(site: Site) -> None:
    """Issue 13 item 1: the http-client's requests by process and outcome, its latency;
    the kernel's Offline answers by target."""
    server = TestServer().start()
    caller = site.node.process(CALLER)
    try:
        before = site.scrape()
        for _ in range(3):
            assert send_request_await_response(caller, "GET", server.url("/hello"), timeout=10).status == 200
        assert send_request_await_response(caller, "GET", server.url("/status/404"), timeout=10).status == 404
        with pytest.raises(porch.PorchError):
            send_request_await_response(caller, "GET", "not a url", timeout=10)
        with pytest.raises(porch.Offline):
            caller.send_and_await_response("nobody:test:sys", b"x", timeout=5)
        after = site.scrape()
    finally:
        server.stop()
    requests_total = "porch_http_client_requests_total"
    assert delta(before, after, requests_total, process=CALLER, outcome="2xx") == 3
    assert delta(before, after, requests_total, process=CALLER, outcome="4xx") == 1
    assert delta(before, after, requests_total, process=CALLER, outcome="BadUrl") == 1
    assert delta(before, after, "porch_http_client_request_duration_seconds_count", process=CALLER) == 4
    assert delta(before, after, "porch_kernel_send_errors_total", kind="Offline", target="nobody:test:sys") == 1
    assert delta(before, after, "porch_kernel_messages_routed_total", source=CALLER,
                 target="http-client:distro:sys") == 5


def test_json_logs_access_log_and_the_request_id_the_app_sees(site: Site) -> None:
    """Issue 13 item 2: JSON lines with time, level, service and pid; an access line per
    request and per WebSocket open and close; the request id the app got (and logged)
    is the one in the access log. A client's own x-request-id is not believed."""
    answer = requests.get(f"{site.base}/{APP}/api?secret=1", headers={"X-Request-Id": "forged"}, timeout=10)
    rid = answer.text
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", rid), rid
    ws = connect(f"ws://127.0.0.1:{site.port}/{APP}/ws", open_timeout=10, legacy=True)
    ws.close()

    def lines(name: str) -> list[dict[str, Any]]:
        out = []
        for line in site.node.log(name).splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def access(kind: str) -> list[dict[str, Any]]:
        return [r for r in lines("http-server") if r.get("logger") == "porch.access" and r.get("kind") == kind]

    wait_for(lambda: access("ws_close"), 15, what="the WebSocket's close in the access log")
    (line,) = [r for r in access("http") if r.get("request_id") == rid]
    assert line["method"] == "GET" and line["status"] == 200 and line["path"] == f"/{APP}/api"
    assert line["process"] == APP and line["client"] == "127.0.0.1" and line["bytes_out"] == len(rid)
    assert line["duration_ms"] >= 0 and line["level"] == "INFO" and line["service"] == "http-server"
    assert isinstance(line["pid"], int) and line["ts"].endswith("Z")
    assert "secret" not in line["path"], "the query is not logged"
    assert any(r["process"] == APP and r["path"] == f"/{APP}/ws" for r in access("ws_open"))
    assert any(r["process"] == APP and r["reason"] == "client" for r in access("ws_close"))
    app_lines = [r for r in lines(APP) if r.get("request_id") == rid]
    assert [r["msg"] for r in app_lines] == [f"handling /{APP}/api"]
    assert app_lines[0]["service"] == APP
    kernel = lines("kernel")
    assert kernel and all(r["service"] == "kernel" for r in kernel)


def test_only_a_local_client_with_the_token_may_scrape(site: Site) -> None:
    """Issue 13 item 1 and SECURITY.md: the Host allow-list, loopback without proxy
    headers, the bearer token; a cookie is not enough (a page could send one)."""
    url = site.base + METRICS
    good = {"Authorization": f"Bearer {site.token}"}
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer " + "x" * 43}, timeout=10).status_code == 401
    cookie = requests.post(site.base + "/login", json={"password": PASSWORD}, timeout=10).cookies
    assert requests.get(url, cookies=cookie, timeout=10).status_code == 401
    assert requests.get(url, headers={**good, "X-Forwarded-For": "192.0.2.1"}, timeout=10).status_code == 403
    assert requests.get(url, headers={**good, "Host": "evil.example"}, timeout=10).status_code == 400
    assert requests.post(url, headers=good, timeout=10).status_code == 405
    assert requests.get(site.base + PROCESSES, timeout=10).status_code == 401
    assert requests.get(site.base + PROCESSES, headers=good, timeout=10).json()["node"] == "metrics.os"
    ip = non_loopback_ip()
    if ip is not None:
        with socket.create_connection((ip, site.port), timeout=10) as sock:
            sock.sendall(f"GET {METRICS} HTTP/1.1\r\nHost: {ip}\r\nAuthorization: Bearer {site.token}\r\n"
                         "Connection: close\r\n\r\n".encode())
            assert sock.recv(100).startswith(b"HTTP/1.1 403"), "a token does not open it from the network"


def test_metrics_off_counts_nothing_and_still_answers() -> None:
    """[metrics] enabled = false: no request, message or latency is counted (the
    benchmark's "off"), the scrape still says what is running."""
    off = Site("[metrics]\nenabled = false\n")
    try:
        for _ in range(3):
            assert requests.get(f"{off.base}/{APP}/api", timeout=10).status_code == 200
        scraped = off.scrape()
        names = {name for name, _ in scraped}
        assert not any(n.startswith(("porch_http_requests", "porch_kernel_messages_routed")) for n in names)
        assert value(scraped, "porch_http_request_duration_seconds_count", process=APP) == 0
        assert value(scraped, "porch_process_up", process=APP) == 1
    finally:
        off.node.close()


# ---------------------------------------------------------------------------- supervised


BEAT = "beat:test:sys"


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SupervisedNode, str]]:
    folder = tmp_path_factory.mktemp("beat")
    script = folder / "beat.py"
    script.write_text(APP_SOURCE)
    port = free_port()
    node = SupervisedNode(
        f'node = "beat.os"\n[logging]\naccess_log = true\n'
        f'[[process]]\nid = "{BEAT}"\ncommand = "{sys.executable} {script}"\n'
        f'capabilities = ["http-server:distro:sys"]\nenvironment = {{ START_DELAY = "2" }}\n',
        "--port", str(port), "--password", PASSWORD)
    assert node.up.returncode == 0, node.up.stdout + node.up.stderr
    try:
        yield node, f"http://127.0.0.1:{port}"
    finally:
        node.close()


def view(node: SupervisedNode, base: str) -> dict[str, dict[str, Any]]:
    token = RpcToken(node.home.state_dir, "metrics.token").get()  # made here if not yet
    got = requests.get(base + PROCESSES, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    assert got.status_code == 200, got.text
    return {p["id"]: p for p in got.json()["processes"]}


def test_a_stopped_supervisord_does_not_stall_the_scrape(supervised: tuple[SupervisedNode, str]) -> None:
    """The scrape and the node's view ask supervisord with a deadline: a supervisord that
    does not answer (SIGSTOP here; wedged in life) is named missing, and the rest is
    answered (it waited for ever, and its calls queued behind each other)."""
    node, base = supervised
    token = RpcToken(node.home.state_dir, "metrics.token").get()
    pid = int(node.home.supervisord_pid.read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(3):  # the second and third find the first call still out
            scraped = scrape(base, token)
            assert value(scraped, "porch_scrape_source_up", source="supervisord") == 0
            assert value(scraped, "porch_scrape_source_up", source="kernel") == 1
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: value(scrape(base, token), "porch_scrape_source_up", source="supervisord") == 1,
             20, 0.2, "supervisord to answer again")


def test_a_killed_process_restarts_and_the_figures_say_so(supervised: tuple[SupervisedNode, str]) -> None:
    """Issue 13 "must show": kill -9 a process: its state goes running -> restarting ->
    running and its restart count moves by one, in the node's view and in the scrape."""
    node, base = supervised
    wait_for(lambda: view(node, base)[BEAT]["state"] == "running", 30, 0.2, "the app to run")
    first = view(node, base)
    assert first[BEAT]["restarts"] == 0 and first[BEAT]["restartable"]
    assert {first[s]["state"] for s in ("kernel:distro:sys", "http-server:distro:sys",
                                        "http-client:distro:sys")} == {"running"}
    token = RpcToken(node.home.state_dir, "metrics.token").get()  # made here if not yet
    assert value(scrape(base, token), "porch_process_restarts_total", process=BEAT) == 0
    os.kill(first[BEAT]["pid"], signal.SIGKILL)
    wait_for(lambda: view(node, base)[BEAT]["state"] == "restarting", 20, 0.1, "the restart to show")
    wait_for(lambda: view(node, base)[BEAT]["state"] == "running", 30, 0.2, "the app to run again")
    again = view(node, base)[BEAT]
    assert again["restarts"] == 1 and again["pid"] != first[BEAT]["pid"]
    scraped = scrape(base, token)
    assert value(scraped, "porch_process_restarts_total", process=BEAT) == 1
    assert value(scraped, "porch_process_state", process=BEAT, state="running") == 1
    assert value(scraped, "porch_scrape_source_up", source="supervisord") == 1
    # The restarted process's traffic is counted on, exactly.
    for _ in range(4):
        assert requests.get(f"{base}/{BEAT}/api", timeout=10).status_code == 200
    after = scrape(base, token)
    assert delta(scraped, after, "porch_http_requests_total", process=BEAT, bound_path=f"/{BEAT}/api",
                 method="GET", status="2xx") == 4
    assert delta(scraped, after, "porch_kernel_messages_routed_total", source=BEAT,
                 target="http-server:distro:sys") == 4
    # The app's output went through the launcher: each line has its time.
    log = node.cli("logs", BEAT).stdout
    assert re.search(rf"^{STAMP} {BEAT}: READY$", log, re.M), log


def test_the_restart_button_restarts_and_refuses_other_sites(supervised: tuple[SupervisedNode, str]) -> None:
    """Issue 13 item 3: the owner's cookie, JSON and the custom header restart a user
    process through supervisord; a cross-site POST, one without the header, without the
    cookie, or for a service is refused, and nothing restarts."""
    node, base = supervised
    wait_for(lambda: view(node, base)[BEAT]["state"] == "running", 30, 0.2, "the app to run")
    before = view(node, base)[BEAT]
    cookie = dict(requests.post(base + "/login", json={"password": PASSWORD}, timeout=10).cookies)
    body = json.dumps({"process": BEAT})
    json_type = {"Content-Type": "application/json"}
    refused = [
        (403, {**json_type, "X-Porch-Action": "1", "Origin": "http://evil.example"}, cookie),
        (403, {**json_type, "X-Porch-Action": "1", "Sec-Fetch-Site": "cross-site"}, cookie),
        (403, json_type, cookie),  # what a form or a plain fetch can send: no custom header
        (415, {"Content-Type": "text/plain", "X-Porch-Action": "1"}, cookie),
        (401, {**json_type, "X-Porch-Action": "1"}, None),
    ]
    for status, headers, cookies in refused:
        got = requests.post(base + RESTART, data=body, headers=headers, cookies=cookies, timeout=10)
        assert got.status_code == status, (headers, got.text)
    service = requests.post(base + RESTART, data=json.dumps({"process": "kernel:distro:sys"}),
                            headers={**json_type, "X-Porch-Action": "1"}, cookies=cookie, timeout=10)
    assert service.status_code == 404
    assert view(node, base)[BEAT]["pid"] == before["pid"], "no refused request restarted anything"
    host = base.split("//")[1].replace("127.0.0.1", "localhost")
    from_the_page = {**json_type, "X-Porch-Action": "1", "Host": host, "Origin": f"http://{host}",
                     "Sec-Fetch-Site": "same-origin"}
    ok = requests.post(base + RESTART, data=body, headers=from_the_page, cookies=cookie, timeout=30)
    assert ok.status_code == 200, ok.text

    def restarted() -> bool:
        now = view(node, base)[BEAT]
        return bool(now["state"] == "running" and now["pid"] != before["pid"])

    wait_for(restarted, 30, 0.2, "the restarted app")
    assert view(node, base)[BEAT]["restarts"] == before["restarts"] + 1


def test_status_top_and_all_logs(supervised: tuple[SupervisedNode, str]) -> None:
    """Issue 13 items 2 and 4: porch status shows rate, errors and p99 per process;
    porch top prints the table; porch logs --all interleaves the services' and the
    processes' logs."""
    node, base = supervised
    wait_for(lambda: view(node, base)[BEAT]["state"] == "running", 30, 0.2, "the app to run")
    for _ in range(5):
        requests.get(f"{base}/{BEAT}/api", timeout=10)
    status = node.cli("status")
    assert status.returncode == 0, status.stderr
    line = next(x for x in status.stdout.splitlines() if x.strip().startswith(BEAT))
    assert re.search(r"RUNNING +[\d.]+ req/s, [\d.]+% err, p99 [\d.]+ms, \d+ restarts; pid \d+", line), line
    top = node.cli("top", "--once")
    assert top.returncode == 0, top.stderr
    rows = {line.split()[0]: line.split()[1] for line in top.stdout.splitlines()[3:] if line.strip()}
    assert rows[BEAT] == "running" and rows["kernel:distro:sys"] == "running"
    logs = node.cli("logs", "--all", "-n", "200").stdout
    labels = {line.split(" | ")[0].strip() for line in logs.splitlines() if " | " in line}
    assert {"kernel", "http-server", BEAT, "supervisord"} <= labels, labels
    assert re.search(rf"^http-server +\| {STAMP} INFO http-server: GET /{BEAT}/api 200 ", logs, re.M)


def test_the_scrape_config_and_dashboard_name_what_the_node_serves(site: Site) -> None:
    """deploy/prometheus.yml scrapes this path with the token; every metric the Grafana
    dashboard (deploy/grafana-porch.json) queries is one a real node serves."""
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    config = (deploy / "prometheus.yml").read_text()
    assert f"metrics_path: {METRICS}" in config and "credentials_file:" in config
    answer = requests.get(site.base + METRICS, headers={"Authorization": f"Bearer {site.token}"}, timeout=15)
    served = set()
    for family in text_string_to_metric_families(answer.text):
        served |= {family.name, *(s.name for s in family.samples)}
        served |= {family.name + suffix for suffix in ("_total", "_bucket", "_count", "_sum")}
    dashboard = json.loads((deploy / "grafana-porch.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\b(porch_[a-z_]+)\b", target["expr"])}
    assert queried and queried <= served, queried - served


def test_porch_metrics_token_prints_the_token_the_scrape_takes(tmp_path: Path) -> None:
    """`porch metrics-token` on a home whose server never ran makes the token (0600);
    the http-server started after it takes that one; a home that does not exist is a
    clear error and is not created."""
    node = Node('node = "tok.os"\n')
    try:
        printed = porch_cli("metrics-token", home=node.home.root)
        assert printed.returncode == 0, printed.stderr
        token = printed.stdout.strip()
        token_file = node.home.state_dir / "metrics.token"
        assert len(token) >= 32 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        port = free_port()
        node.start("kernel")
        node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": PASSWORD})
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(base + METRICS, headers={"Authorization": f"Bearer {token}"},
                                      timeout=5).status_code == 200, 20, 0.2, "the scrape with that token")
        assert porch_cli("metrics-token", home=node.home.root).stdout.strip() == token
        missing = porch_cli("metrics-token", home=tmp_path / "no-such-home")
        assert missing.returncode == 2 and "no node home" in missing.stderr
        assert not (tmp_path / "no-such-home").exists()
    finally:
        node.close()

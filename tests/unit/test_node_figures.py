"""The http-server's figures, scrape and node page, their pure parts (issue 13): who
may scrape or restart, the process states, the history's rates and percentiles, the
exposition written by prometheus_client, the access log's escaping."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from porch.http_server.dashboard import ACTION_HEADER, History, restart_refusal
from porch.http_server.figures import CLIENT_GONE, OWN, AppStats, HttpFigures, printable
from porch.http_server.processes import state_name
from porch.http_server.scrape import exposition, token_refusal
from porch.node.metrics import (
    COUNTER,
    GAUGE,
    HISTOGRAM,
    LATENCY_BUCKETS,
    MAX_SERIES,
    OTHER,
    Family,
    Histogram,
    snapshot,
)

TOKEN = "t" * 43


def headers(**values: str) -> Any:
    named = {k.replace("_", "-").lower(): v for k, v in values.items()}
    return lambda name: named.get(name.lower())


@pytest.mark.parametrize("method, peer, hdrs, status", [
    ("GET", "127.0.0.1", {"Authorization": f"Bearer {TOKEN}"}, None),
    ("HEAD", "::1", {"Authorization": f"bearer {TOKEN}"}, None),
    ("POST", "127.0.0.1", {"Authorization": f"Bearer {TOKEN}"}, 405),
    ("GET", "192.0.2.7", {"Authorization": f"Bearer {TOKEN}"}, 403),
    ("GET", "127.0.0.1", {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "192.0.2.7"}, 403),
    ("GET", "127.0.0.1", {}, 401),
    ("GET", "127.0.0.1", {"Authorization": f"Bearer {TOKEN[:-1]}x"}, 401),
    ("GET", "127.0.0.1", {"Authorization": f"Basic {TOKEN}"}, 401),
    ("GET", "127.0.0.1", {"Cookie": "kinode-auth_n.os=anything"}, 401),
])
def test_who_may_scrape(method: str, peer: str, hdrs: dict[str, str], status: int | None) -> None:
    refusal = token_refusal(method, headers(**hdrs), peer, TOKEN)
    assert (refusal[0] if refusal else None) == status
    if status == 401:
        assert refusal is not None and ("WWW-Authenticate", 'Bearer realm="porch"') in refusal[1]


def test_no_token_opens_nothing() -> None:
    assert token_refusal("GET", headers(Authorization="Bearer "), "127.0.0.1", "")


@pytest.mark.parametrize("method, hdrs, logged_in, status", [
    ("POST", {"Content-Type": "application/json", ACTION_HEADER: "1", "Host": "localhost:8080",
              "Origin": "http://localhost:8080", "Sec-Fetch-Site": "same-origin"}, True, None),
    ("POST", {"Content-Type": "application/json", ACTION_HEADER: "1"}, True, None),  # curl
    ("GET", {"Content-Type": "application/json", ACTION_HEADER: "1"}, True, 405),
    ("POST", {"Content-Type": "application/json", ACTION_HEADER: "1", "Host": "localhost:8080",
              "Origin": "http://evil.example"}, True, 403),
    ("POST", {"Content-Type": "application/json", ACTION_HEADER: "1",
              "Sec-Fetch-Site": "cross-site"}, True, 403),
    ("POST", {"Content-Type": "text/plain", ACTION_HEADER: "1"}, True, 415),
    ("POST", {"Content-Type": "application/json"}, True, 403),  # a form or fetch without it
    ("POST", {"Content-Type": "application/json", ACTION_HEADER: "1"}, False, 401),
])
def test_who_may_restart(method: str, hdrs: dict[str, str], logged_in: bool, status: int | None) -> None:
    refusal = restart_refusal(method, headers(**hdrs), lambda: logged_in)
    assert (refusal[0] if refusal else None) == status


@pytest.mark.parametrize("supervisor, registered, starts, state", [
    (None, True, 0, "running"),
    (None, False, 0, "offline"),
    ("RUNNING", True, 1, "running"),
    ("RUNNING", False, 1, "starting"),
    ("RUNNING", False, 3, "restarting"),
    ("STARTING", False, 1, "starting"),
    ("STARTING", False, 2, "restarting"),
    ("BACKOFF", False, 5, "backing off"),
    ("FATAL", False, 20, "fatal"),
    ("STOPPED", False, 1, "stopped"),
    ("EXITED", False, 1, "exited"),
    ("NOT STARTED", False, 0, "not started"),
])
def test_states(supervisor: str | None, registered: bool, starts: int, state: str) -> None:
    assert state_name(supervisor, registered, starts) == state


def test_the_kernel_runs_when_supervisord_says_so() -> None:
    assert state_name("RUNNING", False, 1, always_registered=True) == "running"


def exchange(app: str = "a:b:c", status_method: str = "GET", started: float = 0.0) -> Any:
    return SimpleNamespace(app=app, bound="/a:b:c/api", method=status_method, body=b"12345",
                           started=started, rid="", path="/a:b:c/api", peer_ip="127.0.0.1")


def test_record_counts_by_process_path_method_and_class(monkeypatch: pytest.MonkeyPatch) -> None:
    figures = HttpFigures(enabled=True)
    monkeypatch.setattr("porch.http_server.figures.time.monotonic", lambda: 1.0)
    figures.record(exchange(started=0.998), 200, 10)
    figures.record(exchange(status_method="BREW", started=0.9), 503, 3)
    figures.record(exchange(app="", started=0.5), 404, 0)
    figures.record(exchange(started=0.5), CLIENT_GONE, 0)
    assert figures.requests.series == {
        ("a:b:c", "/a:b:c/api", "GET", "2xx"): 1, ("a:b:c", "/a:b:c/api", "OTHER", "5xx"): 1,
        (OWN, "/a:b:c/api", "GET", "4xx"): 1, ("a:b:c", "/a:b:c/api", "GET", "4xx"): 1}
    stats = figures.apps["a:b:c"]
    assert (stats.requests, stats.errors, stats.bytes_in, stats.bytes_out) == (3, 1, 15, 13)
    assert stats.front.count == 3 and stats.front.sum == pytest.approx(0.002 + 0.1 + 0.5)


def test_nothing_is_counted_when_metrics_are_off() -> None:
    figures = HttpFigures(enabled=False)
    figures.record(exchange(), 200, 1)
    figures.answered("a:b:c", 0.1)
    assert figures.apps == {} and figures.requests.series == {}
    assert figures.ws_opened("a:b:c", "/x", 1, None) is None


def test_the_access_log_names_the_request(caplog: pytest.LogCaptureFixture) -> None:
    figures = HttpFigures(enabled=False, access=True)
    ex = exchange()
    ex.path = "/a:b:c/\x1b[31mred\nfake line"
    with caplog.at_level(logging.INFO, logger="porch.access"):
        figures.record(ex, 200, 7)
    (record,) = caplog.records
    assert ex.rid and record.request_id == ex.rid  # type: ignore[attr-defined]
    message = record.getMessage()
    assert "\x1b" not in message and "\n" not in message and "\\x1b[31mred\\x0afake line" in message
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["status"] == 200 and fields["bytes_out"] == 7 and fields["process"] == "a:b:c"


def test_printable_cuts_and_escapes() -> None:
    assert printable("/plain/path?x=1") == "/plain/path?x=1"
    assert printable("x" * 500) == "x" * 200
    assert printable("/caf\u00e9\\") == "/caf\u00e9\\x5c"  # a backslash could fake an escape
    assert printable("/a\x00b\u2028") == "/a\\x00b\\u2028"


def test_request_ids_are_unique_and_well_formed() -> None:
    figures = HttpFigures()
    ids = {figures.request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(HttpFigures.valid_request_id(i) for i in ids)
    assert not HttpFigures.valid_request_id("has space") and not HttpFigures.valid_request_id("x" * 65)


def test_history_rates_errors_and_percentiles() -> None:
    figures = HttpFigures(enabled=True)
    history = History(figures)
    stats = figures.stats("a:b:c")
    history.take(0.0)  # its first sample: zero at the start, then this one
    for i in range(100):
        stats.requests += 1
        stats.front.observe(0.002 if i < 90 else 0.2)
        if i >= 95:
            stats.errors += 1
    history.take(10.0)
    summary = history.summary("a:b:c", 10.0)
    assert summary["rate"] == 10.0  # 100 requests in the last 10 s
    assert summary["error_rate"] == 0.05
    assert 1.0 < summary["p50_ms"] <= 2.5 and 100 < summary["p99_ms"] <= 250
    assert summary["spark"] == [10.0] and summary["spark_errors"] == [0.5]
    assert summary["requests"] == 100 and summary["errors"] == 5
    assert history.summary("nobody:b:c", 10.0)["rate"] == 0.0


def test_counts_that_go_down_are_no_negative_rate() -> None:
    """With several workers, one that exits takes its counts out of the sum: the view
    shows no negative rate or sparkline for that (a reset), only what came after."""
    counts = {"a:b:c": 1000}

    def apps() -> dict[str, AppStats]:
        stats = AppStats()
        stats.requests = counts["a:b:c"]
        return {"a:b:c": stats}

    history = History(HttpFigures(enabled=True), 0.0, apps)
    history.take(2.0)
    counts["a:b:c"] = 10
    history.take(4.0)
    summary = history.summary("a:b:c", 4.0)
    assert summary["rate"] >= 0 and min(summary["spark"]) == 0.0, summary  # (1000 -> 10: a reset)


def test_a_process_first_seen_between_samples_started_from_zero() -> None:
    figures = HttpFigures(enabled=True)
    history = History(figures, 0.0)
    history.take(2.0)  # nothing yet
    stats = figures.stats("a:b:c")
    for _ in range(5):
        stats.requests += 1
        stats.front.observe(0.003)
    summary = history.summary("a:b:c", 3.0)  # before the next sample
    assert summary["rate"] == 5.0 and summary["error_rate"] == 0.0
    assert summary["p50_ms"] is not None and 2.5 < summary["p50_ms"] <= 5.0
    history.take(4.0)
    assert history.summary("a:b:c", 4.0)["spark"] == [2.5]


def test_exposition_is_what_prometheus_reads() -> None:
    requests = Family("porch_http_requests", "requests", COUNTER, ("process", "status"))
    requests.inc(("a:b:c", "2xx"), 3)
    latency = Family("porch_x_seconds", "latency", HISTOGRAM, ("process",), buckets=(0.1, 1.0))
    latency.histogram(("a:b:c",)).observe(0.05)
    latency.histogram(("a:b:c",)).observe(5.0)
    gauge_a = Family("porch_g", "a gauge", GAUGE, ("source",))
    gauge_a.set(("kernel",), 1)
    gauge_b = Family("porch_g", "a gauge", GAUGE, ("source",))  # from another snapshot
    gauge_b.set(("http-client",), 0)
    body, content_type = exposition([snapshot([requests, latency, gauge_a]), snapshot([gauge_b])], None)
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    (total,) = families["porch_http_requests"].samples
    assert total.name == "porch_http_requests_total" and total.value == 3
    assert total.labels == {"process": "a:b:c", "status": "2xx"}
    buckets = {s.labels.get("le"): s.value for s in families["porch_x_seconds"].samples
               if s.name.endswith("_bucket")}
    assert buckets == {"0.1": 1, "1.0": 1, "+Inf": 2}
    assert {s.labels["source"]: s.value for s in families["porch_g"].samples} == {"kernel": 1, "http-client": 0}
    open_metrics, kind = exposition([snapshot([requests])], "application/openmetrics-text; version=1.0.0")
    assert kind.startswith("application/openmetrics-text") and open_metrics.endswith(b"# EOF\n")


def test_rows_join_supervisord_the_kernel_and_the_start_counts() -> None:
    """Services first, then porch.toml's processes, then other registered ones; each
    process's state from supervisord and the kernel, restarts from run/starts."""
    from porch.http_server.gather import NodeNow
    from porch.http_server.processes import rows
    from porch.node.config import parse
    from porch.wire import kernel_pb2

    config = parse('[[process]]\nid = "a:b:c"\ncommand = "x"\n[[process]]\nid = "d:e:f"\ncommand = "y"\n'
                   '[[process]]\nid = "rpc:distro:sys"\n')
    registry = kernel_pb2.Registry(kernel_pid=0)
    for pid in ("http-server:distro:sys", "http-client:distro:sys", "a:b:c", "hand:run:sys",
                "rpc:distro:sys"):
        registry.entries.add(process_id=pid, os_pid=0, registered_at=100.0)
    registry.entries.add(process_id="far:away:sys", address="192.0.2.1", connected_at=1.0)
    supervised = [{"name": "kernel", "statename": "RUNNING", "description": "pid 1", "pid": 0},
                  {"name": "http-server", "statename": "RUNNING", "description": "", "pid": 0},
                  {"name": "http-client", "statename": "BACKOFF", "description": "", "pid": 0},
                  {"name": "app-a-b-c", "statename": "RUNNING", "description": "", "pid": 0},
                  {"name": "app-d-e-f", "statename": "RUNNING", "description": "", "pid": 0}]
    now = NodeNow(config, registry=registry, supervised=supervised,
                  starts={"kernel": 1, "http-server.worker": 3, "http-client": 4, "app-a-b-c": 2,
                          "app-d-e-f": 2})
    table = {r.id: r for r in rows(now, with_traffic=["gone:b:c", "_other", "http-server:distro:sys"])}
    assert list(table) == ["kernel:distro:sys", "http-server:distro:sys", "http-client:distro:sys",
                           "a:b:c", "d:e:f", "far:away:sys", "gone:b:c", "hand:run:sys"]
    assert {k: (r.state, r.restarts) for k, r in table.items()} == {
        "kernel:distro:sys": ("running", 0), "http-server:distro:sys": ("running", 2),
        "http-client:distro:sys": ("backing off", 3), "a:b:c": ("running", 1),
        "d:e:f": ("restarting", 1), "far:away:sys": ("running", None), "gone:b:c": ("offline", None),
        "hand:run:sys": ("running", None)}
    assert [k for k, r in table.items() if r.restartable] == ["a:b:c", "d:e:f"]
    assert table["far:away:sys"].kind == "remote" and table["far:away:sys"].detail == "connected from 192.0.2.1"
    unsupervised = {r.id: r.state for r in rows(NodeNow(config, registry=registry))}
    assert unsupervised["d:e:f"] == "offline" and unsupervised["a:b:c"] == "running"
    assert {r.id: r.state for r in rows(NodeNow(config))}["kernel:distro:sys"] == "offline"


def _worker_figures(requests: int, errors: int, latency: float, sockets: int) -> Any:
    figures = HttpFigures()
    for i in range(requests):
        ex = SimpleNamespace(app="a:b:c", bound="/a:b:c/x", method="GET", body=b"ab", rid="",
                             started=time.monotonic() - latency, peer_ip=None, path="/a:b:c/x")
        figures.record(ex, 500 if i < errors else 200, 3)
    return snapshot(figures.families(lambda: {"a:b:c": sockets} if sockets else {}, {}))


def test_several_workers_figures_add_up() -> None:
    """docs/metrics.md "Several workers": the same series of two workers are added (a
    counter, a gauge, a histogram bucket by bucket with its sum); a series only one
    worker has is kept; apps_of and sockets_of read the sum back."""
    from porch.http_server.worker_figures import apps_of, sockets_of
    from porch.node.metrics import merge
    one, two = _worker_figures(5, 1, 0.002, 3), _worker_figures(7, 2, 0.2, 0)
    merged = merge([one, two])
    text = exposition([merged], None)[0].decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    ok = ("porch_http_requests_total", (("bound_path", "/a:b:c/x"), ("method", "GET"), ("process", "a:b:c"),
                                        ("status", "2xx")))
    failed = ok[0], tuple((k, "5xx" if k == "status" else v) for k, v in ok[1])
    assert samples[ok] == 4 + 5 and samples[failed] == 1 + 2
    assert samples[("porch_http_request_bytes_total", (("process", "a:b:c"),))] == 2 * 12
    assert samples[("porch_websockets_open", (("process", "a:b:c"),))] == 3
    count = ("porch_http_request_duration_seconds_count", (("process", "a:b:c"),))
    assert samples[count] == 12
    assert samples[("porch_http_request_duration_seconds_sum", (("process", "a:b:c"),))] == \
        pytest.approx(5 * 0.002 + 7 * 0.2, abs=0.05)
    le_5ms = ("porch_http_request_duration_seconds_bucket", (("le", "0.005"), ("process", "a:b:c")))
    assert samples[le_5ms] == 5
    apps = apps_of(merged)
    assert (apps["a:b:c"].requests, apps["a:b:c"].errors) == (12, 3)
    assert sum(apps["a:b:c"].front.counts) == 12
    assert sockets_of(merged) == {"a:b:c": 3}


def test_a_family_that_does_not_match_is_not_added() -> None:
    from porch.node.metrics import merge
    first, second = Family("x", "h", COUNTER, ("a",)), Family("x", "h", GAUGE, ("a",))
    first.inc(("1",), 2)
    second.set(("1",), 5)
    third = Family("x", "h", COUNTER, ("b",))
    third.inc(("1",), 7)
    merged = merge([snapshot([first]), snapshot([second]), snapshot([third]), snapshot([first])])
    (family,) = merged.families
    assert family.type == COUNTER and [s.value for s in family.series] == [4]


# ---------------------------------------------------------------------------- the figures, rule by rule


def test_the_access_log_line_and_its_fields(monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """docs/metrics.md "The access log": the line and its JSON fields, the duration in
    milliseconds (to the microsecond in the fields)."""
    figures = HttpFigures(enabled=False, access=True)
    monkeypatch.setattr("porch.http_server.figures.time.monotonic", lambda: 2.0)
    ex = exchange(started=0.75 - 2 ** -13)  # 1.2501220703125 s, exactly
    with caplog.at_level(logging.INFO, logger="porch.access"):
        figures.record(ex, 201, 7)
    (record,) = caplog.records
    assert record.getMessage() == "GET /a:b:c/api 201 7B 1250.1ms a:b:c from 127.0.0.1"
    assert record.fields == {  # type: ignore[attr-defined]
        "kind": "http", "method": "GET", "path": "/a:b:c/api", "status": 201, "bytes_in": 5, "bytes_out": 7,
        "duration_ms": 1250.122, "process": "a:b:c", "bound_path": "/a:b:c/api", "client": "127.0.0.1"}


def test_the_access_log_without_a_client_a_path_or_an_owner(caplog: pytest.LogCaptureFixture) -> None:
    """No client address is "-"; an exchange without a path (or None) logs an empty
    one; porch's own answers are logged under the http-server's id."""
    figures = HttpFigures(enabled=False, access=True)
    ex = exchange(app="", started=time.monotonic())
    ex.peer_ip = None
    del ex.path
    pathless = exchange(started=time.monotonic())
    pathless.path = None
    with caplog.at_level(logging.INFO, logger="porch.access"):
        figures.record(ex, 404, 0)
        figures.record(pathless, 200, 0)
    first, second = caplog.records
    assert first.getMessage().startswith("GET  404 0B ") and first.getMessage().endswith(f" {OWN} from -")
    assert first.fields["client"] == "-" and first.fields["path"] == ""  # type: ignore[attr-defined]
    assert first.fields["process"] == OWN  # type: ignore[attr-defined]
    assert second.getMessage().startswith("GET  200 0B ") and second.fields["path"] == ""  # type: ignore[attr-defined]


def test_the_access_log_names_the_client_the_gateway_gives(caplog: pytest.LogCaptureFixture) -> None:
    """Behind a trusted proxy the gateway's client_of names the forwarded address; a
    request id the gateway already set is kept."""
    figures = HttpFigures(enabled=False, access=True)
    figures.client_of = lambda ex: "192.0.2.9"
    ex = exchange(started=time.monotonic())
    ex.rid = "from-proxy-1"
    with caplog.at_level(logging.INFO, logger="porch.access"):
        figures.record(ex, 200, 0)
    (record,) = caplog.records
    assert record.getMessage().endswith(" from 192.0.2.9") and record.request_id == "from-proxy-1"  # type: ignore[attr-defined]
    assert ex.rid == "from-proxy-1"


def test_the_access_log_is_off_unless_asked(caplog: pytest.LogCaptureFixture) -> None:
    figures = HttpFigures()
    assert figures.enabled is True and figures.access is False
    with caplog.at_level(logging.INFO, logger="porch.access"):
        figures.record(exchange(started=time.monotonic()), 200, 0)
        figures.ws_opened("a:b:c", "/a:b:c/ws", 1, "127.0.0.1")
        figures.ws_closed("a:b:c", "client", 1, 1.0)
    assert caplog.records == []


def test_websocket_opens_and_closes_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    figures = HttpFigures(enabled=True, access=True)
    with caplog.at_level(logging.INFO, logger="porch.access"):
        stats = figures.ws_opened("a:b:c", "/a:b:c/\x1bws", 7, "192.0.2.1")
        figures.ws_opened("a:b:c", "/a:b:c/ws", 8, None)
        figures.ws_closed("a:b:c", "client", 7, 1.23456789)
        figures.ws_closed("a:b:c", "client", 8, 2.0)
        figures.ws_closed("d:e:f", "owner_died", 9, 0.0)
    assert stats is figures.apps["a:b:c"]
    assert figures.ws_closes.series == {("a:b:c", "client"): 2, ("d:e:f", "owner_died"): 1}
    assert figures.ws_closes.labels == ("process", "reason")
    open1, open2, close1, _, _ = caplog.records
    assert open1.getMessage() == "WS open /a:b:c/\\x1bws a:b:c channel 7 from 192.0.2.1"
    assert open1.fields == {"kind": "ws_open", "path": "/a:b:c/\\x1bws", "process": "a:b:c",  # type: ignore[attr-defined]
                            "channel": 7, "client": "192.0.2.1"}
    assert open2.getMessage() == "WS open /a:b:c/ws a:b:c channel 8 from -"
    assert open2.fields["client"] == "-"  # type: ignore[attr-defined]
    assert close1.getMessage() == "WS close a:b:c channel 7 after 1.2s: client"
    assert close1.fields == {"kind": "ws_close", "process": "a:b:c", "channel": 7,  # type: ignore[attr-defined]
                             "reason": "client", "duration_ms": 1234.568}


def test_websockets_are_not_counted_when_metrics_are_off(caplog: pytest.LogCaptureFixture) -> None:
    figures = HttpFigures(enabled=False, access=True)
    with caplog.at_level(logging.INFO, logger="porch.access"):
        assert figures.ws_opened("a:b:c", "/x", 1, None) is None
        figures.ws_closed("a:b:c", "client", 1, 1.0)
    assert figures.ws_closes.series == {} and figures.apps == {}
    assert len(caplog.records) == 2


@pytest.mark.parametrize("status, label", [(0, "0xx"), (99, "0xx"), (100, "1xx"), (499, "4xx"), (999, "9xx"),
                                           (1000, "other"), (-1, "other"), (-100, "other")])
def test_a_status_is_counted_by_its_class_or_as_other(status: int, label: str) -> None:
    figures = HttpFigures()
    figures.record(exchange(started=time.monotonic()), status, 0)
    assert list(figures.requests.series) == [("a:b:c", "/a:b:c/api", "GET", label)]


def test_every_5xx_is_an_error() -> None:
    figures = HttpFigures()
    for status in (499, 500, 501, 599, 500):
        figures.record(exchange(started=time.monotonic()), status, 0)
    assert figures.apps["a:b:c"].errors == 4


def test_a_process_has_one_stats_and_past_max_series_they_are_others() -> None:
    figures = HttpFigures()
    first = figures.stats("a:b:c")
    assert figures.stats("a:b:c") is first
    for i in range(1, MAX_SERIES):
        figures.stats(f"p{i}:b:c")
    assert len(figures.apps) == MAX_SERIES and OTHER not in figures.apps
    for app in ("late:b:c", "later:b:c"):
        figures.record(exchange(app=app, started=time.monotonic()), 200, 0)
    assert len(figures.apps) == MAX_SERIES + 1 and "late:b:c" not in figures.apps
    assert figures.apps[OTHER].requests == 2
    assert figures.stats("latest:b:c") is figures.apps[OTHER]


def test_answered_is_the_processes_time_by_process() -> None:
    figures = HttpFigures()
    figures.answered("a:b:c", 0.25)
    figures.answered("a:b:c", 3.0)
    figures.answered("d:e:f", 0.0005)
    assert figures.apps["a:b:c"].app.count == 2 and figures.apps["a:b:c"].app.sum == 3.25
    assert figures.apps["d:e:f"].app.counts[0] == 1
    assert figures.apps["a:b:c"].front.count == 0


def test_request_ids_are_a_workers_random_prefix_and_a_counter() -> None:
    one, two = HttpFigures(), HttpFigures()
    ids = [one.request_id() for _ in range(17)]
    prefix = ids[0].rpartition("-")[0]
    assert len(prefix) == 8 and all(c in "0123456789abcdef" for c in prefix)
    assert ids == [f"{prefix}-{i:x}" for i in range(1, 18)]  # ... -f, -10, -11
    assert two.request_id().rpartition("-")[0] != prefix  # (2**-32 to fail by chance)


def test_the_scrape_has_every_family_with_its_labels_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    figures = HttpFigures()
    monkeypatch.setattr("porch.http_server.figures.time.monotonic", lambda: 1.0)
    figures.record(exchange(started=0.75), 200, 10)  # a 5-byte body
    other = exchange(app="d:e:f", started=0.5)
    other.body = b"xy"
    figures.record(other, 503, 4)
    figures.answered("a:b:c", 0.5)
    stats = figures.ws_opened("a:b:c", "/a:b:c/ws", 1, None)
    assert stats is not None
    stats.ws_in, stats.ws_out, stats.ws_bytes_in, stats.ws_bytes_out = 2, 3, 20, 30
    figures.ws_closed("a:b:c", "client", 1, 1.0)
    snap = snapshot(figures.families(lambda: {"d:e:f": 1, "a:b:c": 2},
                                     {"porch_worker_x": ("what x is", lambda: 7)}))

    def values(family: Any) -> list[tuple[tuple[str, ...], Any]]:
        return [(tuple(s.label_values), (list(s.bucket_counts), s.sum) if family.type == HISTOGRAM else s.value)
                for s in family.series]

    def hist(seconds: float) -> tuple[list[int], float]:
        h = Histogram()
        h.observe(seconds)
        return h.counts, seconds

    got = [(f.name, f.type, tuple(f.label_names), values(f)) for f in snap.families]
    assert got == [
        ("porch_http_requests", COUNTER, ("process", "bound_path", "method", "status"),
         [(("a:b:c", "/a:b:c/api", "GET", "2xx"), 1.0), (("d:e:f", "/a:b:c/api", "GET", "5xx"), 1.0)]),
        ("porch_http_request_duration_seconds", HISTOGRAM, ("process",),
         [(("a:b:c",), hist(0.25)), (("d:e:f",), hist(0.5))]),
        ("porch_http_process_duration_seconds", HISTOGRAM, ("process",), [(("a:b:c",), hist(0.5))]),
        ("porch_http_request_bytes", COUNTER, ("process",), [(("a:b:c",), 5.0), (("d:e:f",), 2.0)]),
        ("porch_http_response_bytes", COUNTER, ("process",), [(("a:b:c",), 10.0), (("d:e:f",), 4.0)]),
        ("porch_websockets_open", GAUGE, ("process",), [(("a:b:c",), 2.0), (("d:e:f",), 1.0)]),
        ("porch_websocket_messages", COUNTER, ("process", "direction"),
         [(("a:b:c", "in"), 2.0), (("a:b:c", "out"), 3.0), (("d:e:f", "in"), 0.0), (("d:e:f", "out"), 0.0)]),
        ("porch_websocket_bytes", COUNTER, ("process", "direction"),
         [(("a:b:c", "in"), 20.0), (("a:b:c", "out"), 30.0), (("d:e:f", "in"), 0.0), (("d:e:f", "out"), 0.0)]),
        ("porch_websocket_closes", COUNTER, ("process", "reason"), [(("a:b:c", "client"), 1.0)]),
        ("porch_worker_x", GAUGE, (), [((), 7.0)]),
    ]
    assert snap.families[-1].help == "what x is"
    assert all(f.help for f in snap.families)
    assert {tuple(f.buckets) for f in snap.families if f.type == HISTOGRAM} == {LATENCY_BUCKETS}

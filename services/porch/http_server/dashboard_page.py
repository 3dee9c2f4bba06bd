"""The node page's live part (issue 13 item 3): a table of every process under the app
list, filled and refreshed by the view the server pushes on the node page's WebSocket
(porch.http_server.dashboard), with sparklines drawn as plain SVG.

Self-contained like porch's other pages: no script from anywhere else. Every value
reaches the page through textContent or an attribute, never as HTML.
"""

from __future__ import annotations

from porch.http_server.dashboard import ACTION_HEADER, DASHBOARD_PATH, RESTART_PATH

STYLE = """
main.wide { width: min(62rem, 96vw); }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .25rem; }
.live { color: var(--muted); font-size: .8rem; margin: 0 0 .6rem; }
.table { overflow-x: auto; margin: 0 0 1.5rem; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { padding: .35rem .45rem; text-align: right; white-space: nowrap; border-bottom: 1px solid
         color-mix(in srgb, var(--muted) 25%, transparent); }
th { color: var(--muted); font-weight: 600; font-size: .75rem; }
th:first-child, td:first-child, th:nth-child(2), td.state { text-align: left; }
td:first-child small { color: var(--muted); display: block; font-size: .75rem; }
.badge { display: inline-block; padding: .05rem .45rem; border-radius: 999px; font-size: .75rem;
         font-weight: 600; color: var(--card); background: var(--muted); }
.badge.running { background: var(--accent); }
.badge.starting, .badge.restarting, .badge.stopping { background: #b7791f; }
.badge.backing-off, .badge.fatal { background: var(--err); color: #fff; }
svg.spark { width: 120px; height: 24px; display: block; }
svg.spark polyline { fill: none; stroke-width: 1.5; }
svg.spark .rate { stroke: var(--accent); }
svg.spark .errors { stroke: var(--err); }
button.small { width: auto; margin: 0; padding: .2rem .6rem; font-size: .8rem; font-weight: 600; }
button.small.secondary { background: transparent; color: var(--accent); border: 1px solid var(--accent); }
"""

SECTION = """
<h2>Processes</h2>
<p id="live" class="live" role="status">connecting&hellip;</p>
<div class="table"><table id="processes" aria-label="processes">
<thead><tr><th>Process</th><th>State</th><th>Up</th><th>Restarts</th><th>Req/s</th><th>Errors</th>
<th>p50</th><th>p99</th><th>WS</th><th>Last minutes</th><th></th></tr></thead>
<tbody><tr><td colspan="11"><noscript>The live view needs JavaScript.</noscript></td></tr></tbody>
</table></div>
"""

SCRIPT = """
(function () {
  var live = document.getElementById("live");
  var body = document.querySelector("#processes tbody");
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function up(s) {
    if (s === null || s === undefined) return "-";
    s = Math.floor(s);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    return m + "m " + (s % 60) + "s";
  }
  function ms(v) {
    return v === null || v === undefined ? "-" : (v < 10 ? v.toFixed(1) : Math.round(v)) + " ms";
  }
  function spark(rates, errors) {
    var ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark"); svg.setAttribute("viewBox", "0 0 120 24");
    svg.setAttribute("preserveAspectRatio", "none");
    var top = Math.max.apply(null, [0.001].concat(rates));
    [[rates, "rate"], [errors, "errors"]].forEach(function (pair) {
      var values = pair[0];
      if (!values.length) return;
      var step = values.length > 1 ? 120 / (values.length - 1) : 0, points = [];
      values.forEach(function (v, i) {
        points.push((i * step).toFixed(1) + "," + (23 - 22 * v / top).toFixed(1));
      });
      var line = document.createElementNS(ns, "polyline");
      line.setAttribute("class", pair[1]); line.setAttribute("points", points.join(" "));
      svg.appendChild(line);
    });
    return svg;
  }
  function restart(id, button) {
    button.disabled = true;
    fetch("__RESTART__", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "__HEADER__": "1"},
      body: JSON.stringify({process: id})
    }).then(function (r) {
      return r.text().then(function (t) { live.textContent = r.ok ? "restarting " + id : t; });
    }).catch(function () { live.textContent = "the node did not answer"; })
      .then(function () { button.disabled = false; });
  }
  function render(view) {
    var rows = [];
    view.processes.forEach(function (p) {
      var tr = el("tr");
      tr.setAttribute("data-process", p.id);
      var name = el("td", p.id.split(":")[0]);
      name.appendChild(el("small", p.id));
      name.title = p.detail;
      tr.appendChild(name);
      var state = el("td", null, "state");
      var badge = el("span", p.state, "badge " + p.state.replace(/ /g, "-"));
      badge.setAttribute("data-state", p.state);
      badge.title = p.detail;
      state.appendChild(badge);
      tr.appendChild(state);
      tr.appendChild(el("td", up(p.uptime_s)));
      tr.appendChild(el("td", p.restarts === null ? "-" : String(p.restarts)));
      tr.appendChild(el("td", p.requests ? p.rate.toFixed(p.rate < 10 ? 1 : 0) : "-"));
      tr.appendChild(el("td", p.error_rate === null ? "-" : (100 * p.error_rate).toFixed(1) + " %"));
      tr.appendChild(el("td", ms(p.p50_ms)));
      tr.appendChild(el("td", ms(p.p99_ms)));
      tr.appendChild(el("td", String(p.websockets)));
      var chart = el("td");
      chart.appendChild(spark(p.spark, p.spark_errors));
      tr.appendChild(chart);
      var action = el("td");
      if (p.restartable) {
        var b = el("button", "Restart", "small secondary");
        b.type = "button";
        b.setAttribute("aria-label", "restart " + p.id);
        b.addEventListener("click", function () { restart(p.id, b); });
        action.appendChild(b);
      }
      tr.appendChild(action);
      rows.push(tr);
    });
    body.replaceChildren.apply(body, rows);
    var missing = Object.keys(view.missing || {});
    live.textContent = "live, " + new Date(view.time * 1000).toLocaleTimeString() +
      (view.metrics ? "" : " (metrics are off: no rates)") +
      (missing.length ? " (no answer from " + missing.join(", ") + ")" : "");
  }
  function connect() {
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "__PATH__");
    ws.onmessage = function (ev) { render(JSON.parse(ev.data)); };
    ws.onclose = function () { live.textContent = "reconnecting\\u2026"; setTimeout(connect, 2000); };
  }
  connect();
})();
"""
SCRIPT = (SCRIPT.replace("__RESTART__", RESTART_PATH).replace("__HEADER__", ACTION_HEADER)
          .replace("__PATH__", DASHBOARD_PATH))

"""The pages the server draws itself: the login page, the default homepage (the list of
apps) and the "not found" page; and the node's icon.

Self-contained (inline CSS and JS, no external assets) so they work offline, behind any
proxy, and with JavaScript off (the form posts and the server redirects). Apps that
want the same look copy the app stylesheet `porch new` writes (its colours are these).
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from porch.http_server import dashboard_page

_STYLE = """
:root { color-scheme: light dark; --fg: #1d1d1f; --bg: #f6f6f3; --card: #fff; --accent: #2f6f4f;
        --muted: #6b6b6b; --err: #b3261e; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #ececec; --bg: #151515; --card: #222; --accent: #6fbf8f; --muted: #a0a0a0; }
}
* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: var(--bg);
       color: var(--fg); font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { width: min(26rem, 92vw); background: var(--card); padding: 2rem; border-radius: 12px;
       box-shadow: 0 1px 3px rgba(0,0,0,.12); }
h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
p.sub { margin: 0 0 1.5rem; color: var(--muted); font-size: .9rem; word-break: break-all; }
label { display: block; font-size: .9rem; margin-bottom: .35rem; }
input[type=password] { width: 100%; padding: .6rem .7rem; font: inherit; border-radius: 8px;
       border: 1px solid var(--muted); background: transparent; color: inherit; }
button { margin-top: 1rem; width: 100%; padding: .65rem; font: inherit; font-weight: 600;
         border: 0; border-radius: 8px; background: var(--accent); color: #fff; cursor: pointer; }
button:disabled { opacity: .6; cursor: wait; }
.error { color: var(--err); font-size: .9rem; min-height: 1.4em; margin: .6rem 0 0; }
ul { list-style: none; padding: 0; margin: 0 0 1.5rem; }
li a { display: block; padding: .55rem .7rem; border-radius: 8px; color: inherit; text-decoration: none; }
li a:hover { background: var(--bg); }
li small { color: var(--muted); display: block; font-size: .8rem; }
a { color: var(--accent); }
nav { margin: 0 0 1rem; font-size: .9rem; }
code { font-size: .9em; word-break: break-all; }
"""

# The node's icon: on every page porch draws (so browsers do not ask for /favicon.ico)
# and at /favicon.ico itself for apps' pages that name none.
ICON_SVG = (b"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'>"
            b"<rect width='32' height='32' rx='7' fill='#2f6f4f'/>"
            b"<path d='M11 26V8h6.5a5.5 5.5 0 0 1 0 11H11' fill='none' stroke='#fff' "
            b"stroke-width='3.2' stroke-linejoin='round'/></svg>")
ICON_LINK = '<link rel="icon" href="data:image/svg+xml,' + quote(ICON_SVG.decode(), safe="/:=' ") + '">'


_LOGIN_JS = """
(function () {
  var form = document.getElementById("login"), err = document.getElementById("error");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var button = form.querySelector("button");
    button.disabled = true; err.textContent = "";
    var sub = form.elements.subdomain.value;
    if (!sub) {
      // Kinode's rule: on a secure subdomain (first host label = package-publisher of the
      // app in the first path segment), log in for that app only.
      var first = location.pathname.split("/")[1] || "";
      var parts = first.split(":");
      if (parts.length === 3) {
        var expect = (parts[1] + "-" + parts[2]).replace(/[^A-Za-z0-9]/g, "-");
        if (location.hostname.split(".")[0] === expect) sub = first;
      }
    }
    fetch("/login", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      body: JSON.stringify({password: form.elements.password.value, subdomain: sub})
    }).then(function (r) {
      if (r.ok) {
        var to = form.elements.redirect.value;
        // At /login itself there is nothing to reload into: go to the app list.
        if (!to && location.pathname === "/login") to = "/";
        if (to) location.assign(to); else location.reload();
        return;
      }
      return r.json().catch(function () { return {}; }).then(function (body) {
        var wait = parseInt(r.headers.get("Retry-After") || "", 10);
        if (r.status === 429) {
          err.textContent = "Too many failed attempts from here. Try again in " +
            (wait > 0 ? wait + " seconds." : "a minute.");
        } else {
          err.textContent = body.error || ("The node answered " + r.status + ".");
        }
        button.disabled = false;
      });
    }).catch(function () { err.textContent = "the node did not answer"; button.disabled = false; });
  });
})();
"""


def login_page(node: str, redirect: str, subdomain: str = "", error: str = "") -> bytes:
    action = "/login?redirect=" + quote(redirect, safe="/") if redirect else "/login"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · {escape(node)}</title>{ICON_LINK}<style>{_STYLE}</style></head>
<body><main>
<h1>Log in</h1>
<p class="sub">to the porch node <strong>{escape(node)}</strong></p>
<form id="login" method="post" action="{escape(action)}">
<label for="password">Node password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="redirect" value="{escape(redirect)}">
<input type="hidden" name="subdomain" value="{escape(subdomain)}">
<button type="submit">Log in</button>
<p id="error" class="error" role="alert">{escape(error)}</p>
</form>
</main><script>{_LOGIN_JS}</script></body></html>
""".encode()


def homepage(node: str, apps: dict[str, str]) -> bytes:
    """The list of apps, and under it the node's processes, live (dashboard_page). An
    app's root is linked with its trailing slash, so that its page's relative URLs
    resolve under the app."""
    apps = {app: path + "/" if path == "/" + app else path for app, path in apps.items()}
    items = "".join(
        f'<li><a href="{escape(quote(path, safe="/:@.-_~"))}">{escape(app.split(":")[0])}'
        f"<small>{escape(app)}</small></a></li>"
        for app, path in sorted(apps.items())
    ) or "<li><small>No app has bound a path yet.</small></li>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(node)}</title>{ICON_LINK}<style>{_STYLE}{dashboard_page.STYLE}</style></head>
<body><main class="wide">
<h1>{escape(node)}</h1>
<p class="sub">Apps on this node</p>
<ul>{items}</ul>
{dashboard_page.SECTION}
<form method="post" action="/logout"><button type="submit">Log out</button></form>
</main><script>{dashboard_page.SCRIPT}</script></body></html>
""".encode()


def not_found_page(node: str, path: str) -> bytes:
    """What a browser gets for a path nothing on the node answers (404)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Not found · {escape(node)}</title>{ICON_LINK}<style>{_STYLE}</style></head>
<body><main>
<nav><a href="/">&larr; apps on {escape(node)}</a></nav>
<h1>Not found</h1>
<p class="sub">Nothing on this node answers <code>{escape(path)}</code>.</p>
<p>An app's pages live under its process id, as in <code>/hello:hello:sys/</code>; the
app list links to every app that has bound a path.</p>
</main></body></html>
""".encode()

"""porch's own pages and node paths, pure (issue 14 item 6, Kinode's /our.js)."""

from __future__ import annotations

import json

from porch.http_server import pages
from porch.http_server.gateway import our_js


def test_our_js_is_kinodes_line_with_the_name_escaped_whatever_it_holds() -> None:
    assert our_js("a.os") == b'window.our = {}; window.our.node = "a.os";'
    hostile = "x'\";</script><b>\u2028"
    line = our_js(hostile).decode()
    assert "</script>" not in line and "<" not in line
    value = line.removeprefix("window.our = {}; window.our.node = ").removesuffix(";")
    assert json.loads(value) == hostile


def test_the_app_list_links_an_apps_root_with_its_slash() -> None:
    page = pages.homepage("n.os", {"a:b:c": "/a:b:c", "d:e:f": "/d:e:f/api"}).decode()
    assert 'href="/a:b:c/"' in page and 'href="/d:e:f/api"' in page


def test_every_page_names_an_icon_and_escapes_what_it_shows() -> None:
    for page in (pages.login_page("n.os", ""), pages.homepage("n.os", {}),
                 pages.not_found_page("n.os", "/<i>x</i>")):
        assert pages.ICON_LINK.encode() in page
    assert b"<i>x</i>" not in pages.not_found_page("n.os", "/<i>x</i>")

import time

import jwt
import pytest

from porch.http_server.auth import (
    Auth,
    cross_site,
    find_cookie,
    is_local,
    request_target,
    safe_redirect,
    strip_auth_cookies,
    subdomain_location,
    wants_html,
)
from porch.http_server.sessions import open_sessions
from porch.http_server.state import NodeSecrets

SECRET = b"k" * 32


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Auth:
    state = tmp_path_factory.mktemp("state")
    secrets_ = NodeSecrets(state)
    secrets_.set_password("pw")
    return Auth("n.os", SECRET, secrets_.password_hash(), sessions=open_sessions(state))


def test_password(auth: Auth) -> None:
    assert auth.check_password("pw")
    assert not auth.check_password("PW")
    assert not auth.check_password("")


def test_token_round_trip_and_scoping(auth: Auth) -> None:
    general = auth.issue()
    app = auth.issue("a:b:c")
    assert auth.valid(general)
    assert not auth.valid(general, "a:b:c"), "the general cookie does not open a secure app"
    assert auth.valid(app, "a:b:c")
    assert not auth.valid(app), "an app cookie is not a general login"


@pytest.mark.parametrize("claims, key, alg", [
    ({"username": "n.os", "subdomain": None, "expiration": 1}, SECRET, "HS256"),  # expired
    ({"username": "other.os", "subdomain": None, "expiration": 2**40}, SECRET, "HS256"),
    ({"username": "n.os", "subdomain": None, "expiration": 2**40}, b"x" * 32, "HS256"),
    ({"username": "n.os", "subdomain": None, "expiration": 2**40}, b"x" * 64, "HS512"),
    ({"username": "n.os", "subdomain": None}, SECRET, "HS256"),  # no expiration
])
def test_bad_tokens(auth: Auth, claims: dict[str, object], key: bytes, alg: str) -> None:
    assert not auth.valid(jwt.encode(claims, key, algorithm=alg))


def test_padding_and_junk_are_refused(auth: Auth) -> None:
    assert not auth.valid(auth.issue() + "=")
    assert not auth.valid("a.b")
    assert not auth.valid(None)


def test_cookie_parsing_is_kinodes() -> None:
    assert find_cookie("other=1; kinode-auth_n.os=T", "kinode-auth_n.os") == "T"
    assert find_cookie("kinode-auth_n.os=T;other=1", "kinode-auth_n.os") is None
    assert find_cookie("kinode-auth_n.os=a=b", "kinode-auth_n.os") is None
    assert find_cookie(None, "x") is None


def test_authorized_from_header(auth: Auth) -> None:
    assert auth.authorized(f"x=1; kinode-auth_n.os={auth.issue()}")
    assert auth.authorized(f"kinode-auth_n.os@a:b:c={auth.issue('a:b:c')}", "a:b:c")


def test_cookie_attributes(auth: Auth) -> None:
    cookie = auth.set_cookie("T")
    assert cookie.startswith("kinode-auth_n.os=T; Path=/;")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Max-Age=0" in auth.clear_cookie()


@pytest.mark.parametrize("target, expected", [
    ("/x", "/x"), ("/a?b=c&d=%20e", "/a?b=c&d=%20e"), ("/", "/"), ("/a//b", "/a//b"),
    ("/caf\u00e9 x", "/caf%C3%A9%20x"), ("/\u20ac?q=\u2028", "/%E2%82%AC?q=%E2%80%A8"),
    ("//evil.com", None), ("http://evil.com", None), ("/\\evil.com", None), ("/a\\b", None),
    ("x", None), ("", None), (None, None), ("/a\nb", None), ("/\t/evil.com", None), ("/\x7f", None),
    ("/%2F%2Fevil.com", None), ("/%2fevil.com", None), ("/%5Cevil.com", None), ("/%09/evil.com", None),
    ("/\ud800", None), ("javascript:alert(1)", None), (" /x", None),
])
def test_safe_redirect(target: str | None, expected: str | None) -> None:
    """issue 9 item 3: only a path on this origin, in a form a Location can carry."""
    assert safe_redirect(target) == expected


def test_request_target_keeps_the_bytes_the_client_sent() -> None:
    # Tornado reads the request line as Latin-1: "\u00c3\u00a9" is the UTF-8 of "e acute".
    assert request_target("/caf\u00c3\u00a9", "q=1") == "/caf%C3%A9?q=1"
    assert request_target("//evil.example", "") == "//evil.example"  # and safe_redirect refuses it


@pytest.mark.parametrize("host, target, expected", [
    ("localhost:8080", "/a:b:c/x?y=1", "http://b-c.localhost:8080/a:b:c/x?y=1"),
    ("[::1]:8080", "/a:b:c", "http://b-c.[::1]:8080/a:b:c"),
    ("localhost@evil.example", "/a:b:c", None), ("evil.example/x", "/a:b:c", None),
    ("localhost:8080", "//evil.example", None), ("", "/a:b:c", None),
])
def test_subdomain_location(host: str, target: str, expected: str | None) -> None:
    assert subdomain_location("http", "b-c", host, target) == expected


@pytest.mark.parametrize("origin, fetch_site, host, refused", [
    (None, None, "localhost:8080", False),  # curl, scripts
    ("http://localhost:8080", "same-origin", "localhost:8080", False),
    ("http://localhost:8080", None, "localhost:8080", False),
    ("https://node.example", None, "node.example:443", False),
    (None, "none", "localhost:8080", False),
    ("http://evil.example", None, "localhost:8080", True),
    ("http://localhost:8081", None, "localhost:8080", True),
    ("null", None, "localhost:8080", True),
    (None, "cross-site", "localhost:8080", True),
    ("http://b-c.localhost:8080", "same-site", "localhost:8080", True),  # an app's subdomain
    ("http://localhost:8080", "cross-site", "localhost:8080", True),
])
def test_cross_site(origin: str | None, fetch_site: str | None, host: str, refused: bool) -> None:
    """issue 9 item 5: a page elsewhere must not log the owner out."""
    assert cross_site(origin, fetch_site, host) is refused


@pytest.mark.parametrize("header, app, expected", [
    ("a=1; b=2", "x:y:z", "a=1; b=2"),
    ("a=1; kinode-auth_n.os=T; b=2", "x:y:z", "a=1; b=2"),
    ("kinode-auth_n.os=T", "x:y:z", None),
    ("a=1;kinode-auth_n.os=T;b=2", "x:y:z", "a=1; b=2"),  # any spacing an app's parser accepts
    (" KINODE-AUTH_N.OS =T; a=1", "x:y:z", "a=1"),
    ("kinode-auth_n.os@x:y:z=S; kinode-auth_n.os@o:p:q=U; a=1", "x:y:z", "kinode-auth_n.os@x:y:z=S; a=1"),
    ("kinode-auth_n.os@x:y:z=S", None, None),
    ("kinode-auth_n.osx=1; kinode-auth_n.o=2", "x:y:z", "kinode-auth_n.osx=1; kinode-auth_n.o=2"),
])
def test_strip_auth_cookies(header: str, app: str | None, expected: str | None) -> None:
    """issue 9 item 7: an app never sees the node's login, nor another app's."""
    assert strip_auth_cookies(header, "n.os", app) == expected


def test_tokens_without_a_session_are_refused(auth: Auth) -> None:
    """issue 9 item 5: tokens from before sessions (no sid), or naming a session that
    is not live, open nothing, even well signed and unexpired."""
    claims = {"username": "n.os", "subdomain": None, "expiration": 2**40, "exp": 2**40}
    assert not auth.valid(jwt.encode(claims, SECRET, algorithm="HS256"))
    assert not auth.valid(jwt.encode({**claims, "sid": "made-up"}, SECRET, algorithm="HS256"))


def test_revoke_ends_the_session_at_once(auth: Auth) -> None:
    token = auth.issue()
    other = auth.issue()
    assert auth.valid(token)  # and now cached
    assert auth.revoke(token)
    assert not auth.valid(token) and not auth.revoke(token)
    assert auth.valid(other), "only that session ends"
    app_token = auth.issue("a:b:c")
    assert not auth.revoke(app_token), "an app's token is not the general one"
    assert auth.revoke(app_token, "a:b:c") and not auth.valid(app_token, "a:b:c")


def test_locality_and_browsers() -> None:
    assert is_local("127.0.0.1", False) and is_local("::1", False)
    assert not is_local("127.0.0.1", True)
    assert not is_local("10.0.0.1", False)
    assert wants_html("text/html,application/xhtml+xml")
    assert not wants_html("application/json") and not wants_html(None)


def test_expiry_is_checked_even_when_cached(auth: Auth) -> None:
    token = auth.issue(now=time.time() - auth.session_s + 1)
    assert auth.valid(token)
    time.sleep(1.1)
    assert not auth.valid(token)

import time
from collections.abc import Iterator
from pathlib import Path

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
def _state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The state directory and the password's hash (argon2: slow, so made once)."""
    state = tmp_path_factory.mktemp("state")
    secrets_ = NodeSecrets(state)
    secrets_.set_password("pw")
    return state, secrets_.password_hash()


@pytest.fixture
def auth(_state: tuple[Path, str]) -> Iterator[Auth]:
    state, password_hash = _state
    sessions = open_sessions(state)
    yield Auth("n.os", SECRET, password_hash, sessions=sessions)
    sessions.close()


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


# ---------------------------------------------------------------------- exact rules (issue 16)


class FakeSessions:
    """What Auth asks of the sessions store, recorded (the store is tested on its own)."""

    def __init__(self) -> None:
        self.created: list[tuple[str | None, int, float | None]] = []
        self.live: set[str] = set()

    def create(self, app: str | None, expires: int, now: float | None = None) -> str:
        self.created.append((app, expires, now))
        sid = f"sid{len(self.created)}"
        self.live.add(sid)
        return sid

    def is_live(self, sid: str, now: float | None = None) -> bool:
        return sid in self.live

    def revoke(self, sid: str) -> None:
        self.live.discard(sid)


def fake_auth(**kwargs: object) -> tuple[Auth, FakeSessions]:
    sessions = FakeSessions()
    return Auth("n.os", SECRET, "unused", sessions=sessions, **kwargs), sessions  # type: ignore[arg-type]


MONTH = 30 * 86400


def test_a_login_lasts_30_days_by_default_in_its_token_session_and_cookie() -> None:
    auth, sessions = fake_auth()
    token = auth.issue("a:b:c", now=1000.9)
    assert sessions.created == [("a:b:c", 1000 + MONTH, 1000.9)]
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"username": "n.os", "subdomain": "a:b:c", "expiration": 1000 + MONTH,
                      "exp": 1000 + MONTH, "sid": "sid1"}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    auth.issue("", now=5.0)
    assert sessions.created[-1] == (None, 5 + MONTH, 5.0), "no app: the general login"
    assert f"Max-Age={MONTH};" in auth.set_cookie("T")
    assert fake_auth(session_days=0.5)[0].session_s == 43200


def test_the_cookies_exactly() -> None:
    plain, _ = fake_auth()
    secure, _ = fake_auth(https=True)
    attrs = f"; Path=/; Max-Age={MONTH}; HttpOnly; SameSite=Lax"
    cleared = "; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
    assert plain.set_cookie("T") == "kinode-auth_n.os=T" + attrs
    assert plain.set_cookie("T", "a:b:c") == "kinode-auth_n.os@a:b:c=T" + attrs
    assert secure.set_cookie("T", "a:b:c") == "kinode-auth_n.os@a:b:c=T" + attrs + "; Secure"
    assert plain.clear_cookie() == "kinode-auth_n.os=" + cleared
    assert plain.clear_cookie("a:b:c") == "kinode-auth_n.os@a:b:c=" + cleared
    assert secure.clear_cookie() == "kinode-auth_n.os=" + cleared + "; Secure"


def test_a_token_expires_at_its_expiration_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from porch.http_server import auth as auth_module

    auth, _ = fake_auth()
    auth.issue(now=1000.0)  # session sid1
    expiration = 1000 + MONTH
    claims = {"username": "n.os", "subdomain": None, "expiration": expiration, "sid": "sid1"}
    unexpiring = jwt.encode(claims, SECRET, algorithm="HS256")  # no "exp": our own check decides
    for t, live in ((expiration - 0.5, True), (expiration, False)):
        monkeypatch.setattr(auth_module.time, "time", lambda t=t: t)
        assert auth.valid(unexpiring) is live, t


def test_verified_tokens_are_remembered_up_to_4096() -> None:
    auth, _ = fake_auth()
    base = {"username": "n.os", "subdomain": None, "expiration": 2**40, "exp": 2**40}
    for i in range(4097):
        token = jwt.encode({**base, "sid": f"gone{i}"}, SECRET, algorithm="HS256")
        assert not auth.valid(token), "well signed, but its session is not live"
        assert len(auth._verified) <= 4096
    assert len(auth._verified) == 1, "emptied when full"


def test_state_changing_requests_from_default_ports_and_odd_origins() -> None:
    assert not cross_site("http://node.example:80", None, "node.example")
    assert not cross_site("http://node.example", None, "node.example:80")
    assert not cross_site("https://node.example:443", None, "node.example")
    assert cross_site("https://node.example:80", None, "node.example")
    assert cross_site("ftp://localhost:8080", None, "localhost:8080"), "not a web origin"
    assert cross_site("http://localhost:8080", None, None), "no Host to be the same as"
    assert cross_site("http://localhost:8080", None, "")
    assert cross_site("http://", None, "localhost:8080")


def test_kinode_s_cookie_separator_is_exactly_semicolon_space() -> None:
    name = "kinode-auth_n.os"
    assert find_cookie(f"a=1;\t{name}=T", name) is None
    assert find_cookie(f"a=1 {name}=T", name) is None
    assert find_cookie(f"a=1;  {name}=T", name) is None


def test_request_target_encodes_what_latin_1_cannot_hold_as_utf_8() -> None:
    assert request_target("/\u20ac", "q=\u00e9") == "/%E2%82%AC?q=%C3%A9"
    assert request_target("/\ud800", "") == "/%ED%A0%80", "a lone surrogate is still written"


@pytest.mark.parametrize("target", ["/%0A/evil.com", "/%0D/evil.com", "/%0D%0A/evil.com",
                                    "/%0a%09%0d/evil.com"])
def test_decoded_line_breaks_do_not_hide_a_second_slash(target: str) -> None:
    assert safe_redirect(target) is None


def test_undecodable_escapes_are_kept_as_they_are() -> None:
    assert safe_redirect("/%FF%FE/x") == "/%FF%FE/x"
    assert safe_redirect("/%C0%AF") == "/%C0%AF"


def test_stripping_keeps_an_untouched_header_as_it_came() -> None:
    assert strip_auth_cookies("kinode-auth_n.osx=1;b=2", "n.os", None) == "kinode-auth_n.osx=1;b=2"


def test_an_auth_cookie_whose_value_holds_equals_signs_is_stripped() -> None:
    assert strip_auth_cookies("kinode-auth_n.os=abc==; a=1", "n.os", "x:y:z") == "a=1"
    assert strip_auth_cookies("a=1; kinode-auth_n.os@o:p:q=x=y", "n.os", "x:y:z") == "a=1"


def test_a_secure_subdomain_location_keeps_https() -> None:
    assert subdomain_location("https", "b-c", "node.example", "/a:b:c/x") == "https://b-c.node.example/a:b:c/x"
    assert subdomain_location("ftp", "b-c", "node.example", "/a:b:c/x") is None

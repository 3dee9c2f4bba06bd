import time

import jwt
import pytest

from porch.http_server.auth import Auth, RateLimiter, find_cookie, is_local, safe_redirect, wants_html
from porch.http_server.state import NodeSecrets

SECRET = b"k" * 32


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Auth:
    secrets_ = NodeSecrets(tmp_path_factory.mktemp("state"))
    secrets_.set_password("pw")
    return Auth("n.os", SECRET, secrets_.password_hash())


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


@pytest.mark.parametrize("target, ok", [
    ("/x", True), ("/a?b=c", True), ("//evil.com", False), ("http://evil.com", False),
    ("/\\evil.com", False), ("x", False), ("", False), (None, False), ("/a\nb", False),
])
def test_safe_redirect(target: str | None, ok: bool) -> None:
    assert (safe_redirect(target) is not None) is ok


def test_rate_limiter() -> None:
    rl = RateLimiter(2, 60)
    assert rl.allow("a", 0)[0] and rl.allow("a", 1)[0]
    allowed, retry = rl.allow("a", 2)
    assert not allowed and retry == pytest.approx(58)
    assert rl.allow("b", 2)[0]
    assert rl.allow("a", 61)[0]


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

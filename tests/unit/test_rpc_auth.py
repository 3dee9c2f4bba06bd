"""Who may use the RPC endpoint, and its token file (issue 9 item 1), pure."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from porch.http_server.rpc_auth import RpcToken, bearer, rpc_refusal, token_matches

TOKEN = "t" * 43
GOOD = {"Host": "localhost:8080", "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}


def check(headers: dict[str, str], method: str = "POST", logged_in: bool = False) -> int | None:
    refusal = rpc_refusal(method, lambda name: headers.get(name), TOKEN, lambda: logged_in)
    return None if refusal is None else refusal[0]


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in GOOD.items() if k != name}


def test_token_or_cookie_with_the_custom_header() -> None:
    assert check(GOOD) is None
    assert check({**GOOD, "Content-Type": "application/json; charset=utf-8"}) is None
    assert check({**GOOD, "Authorization": f"bearer  {TOKEN} "}) is None
    assert check(without("Authorization")) == 401
    assert check({**GOOD, "Authorization": f"Bearer {TOKEN[:-1]}x"}) == 401
    assert check({**GOOD, "Authorization": f"Basic {TOKEN}"}) == 401
    cookie_only = without("Authorization")
    assert check(cookie_only, logged_in=True) == 401, "the cookie alone is what a cross-site form has"
    assert check({**cookie_only, "X-Porch-RPC": "1"}, logged_in=True) is None
    assert check({**cookie_only, "X-Porch-RPC": "1"}, logged_in=False) == 401
    # a wrong token is not rescued by the cookie
    assert check({**GOOD, "Authorization": "Bearer nope", "X-Porch-RPC": "1"}, logged_in=True) == 401


@pytest.mark.parametrize(("extra", "status"), [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({"Origin": "http://localhost:8081"}, 403),
    ({"Origin": "http://localhost:8080"}, None),
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),
    ({"Sec-Fetch-Site": "same-origin"}, None),
    ({"Sec-Fetch-Site": "none"}, None),
    ({"Content-Type": "text/plain"}, 415),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
    ({"Content-Type": "application/jsonx"}, 415),
])
def test_browser_requests_of_other_origins_are_refused_even_with_the_token(
        extra: dict[str, str], status: int | None) -> None:
    assert check({**GOOD, **extra}) == status


def test_no_content_type_and_other_methods() -> None:
    assert check(without("Content-Type")) == 415
    assert check(GOOD, method="GET") == 405
    assert check(GOOD, method="OPTIONS") == 405


def test_token_compare() -> None:
    assert token_matches(TOKEN, TOKEN)
    assert not token_matches(TOKEN + "x", TOKEN)
    assert not token_matches("", TOKEN)
    assert not token_matches("\udcff" * 43, TOKEN)  # not even encodable: still just False
    assert bearer("Bearer abc") == "abc"
    assert bearer("Bearer") is None and bearer("Bearer   ") is None and bearer(None) is None
    assert bearer("Token abc") is None


def test_token_file_is_made_once_0600(tmp_path: Path) -> None:
    first = RpcToken(tmp_path).get()
    assert len(first) >= 32
    path = tmp_path / "rpc.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert RpcToken(tmp_path).get() == first
    assert [p.name for p in tmp_path.iterdir()] == ["rpc.token"], "no temporary file left"


def test_token_file_racing_creators_agree(tmp_path: Path) -> None:
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda: tokens.append(RpcToken(tmp_path).get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(tokens)) == 1
    assert tokens[0] == (tmp_path / "rpc.token").read_text().strip()


def test_an_unusable_token_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "rpc.token"
    path.write_text("\n")
    os.chmod(path, 0o644)
    token = RpcToken(tmp_path).get()
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---------------------------------------------------------------------- exact rules (issue 16)

AUTHENTICATE = ("WWW-Authenticate", 'Bearer realm="porch"')


def refusal(headers: dict[str, str], method: str = "POST",
            logged_in: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:
    r = rpc_refusal(method, lambda name: headers.get(name), TOKEN, lambda: logged_in)
    assert r is not None
    status, head, body = r
    assert body.endswith(b"\n") and body.count(b"\n") == 1, "one line of text"
    return status, list(head), body


def test_each_refusal_says_why_with_the_headers_its_status_needs() -> None:
    from porch.http_server.exchange import TEXT

    status, head, body = refusal(GOOD, method="GET")
    assert (status, head) == (405, [TEXT, ("Allow", "POST")]) and b"takes POST" in body
    status, head, body = refusal({**GOOD, "Origin": "http://evil.example"})
    assert (status, head) == (403, [TEXT]) and b"cross-origin requests" in body
    status, head, body = refusal({**GOOD, "Sec-Fetch-Site": "cross-site"})
    assert (status, head) == (403, [TEXT]) and b"cross-site requests" in body
    status, head, body = refusal(without("Content-Type"))
    assert (status, head) == (415, [TEXT]) and b"Content-Type: application/json" in body
    status, head, body = refusal({**GOOD, "Authorization": "Bearer nope"})
    assert (status, head) == (401, [TEXT, AUTHENTICATE])
    assert b"wrong RPC token" in body and b"`porch rpc-token`" in body
    status, head, body = refusal(without("Authorization"), logged_in=True)
    assert (status, head) == (401, [TEXT, AUTHENTICATE])
    assert b"Authorization: Bearer <token>" in body and b"`porch rpc-token`" in body
    assert b"X-Porch-RPC header" in body


def test_without_a_host_the_origin_is_compared_with_localhost() -> None:
    no_host = without("Host")
    assert check({**no_host, "Origin": "http://localhost"}) is None
    assert check({**no_host, "Origin": "http://localhost:8080"}) == 403


def test_only_the_media_type_before_the_first_parameter_counts() -> None:
    assert check({**GOOD, "Content-Type": "application/json; charset=utf-8; x=y"}) is None
    assert check({**GOOD, "Content-Type": " Application/JSON ;charset=utf-8"}) is None


def test_a_generated_token_is_43_url_safe_characters_on_one_line(tmp_path: Path) -> None:
    token = RpcToken(tmp_path).get()
    assert len(token) == 43 and token.replace("-", "").replace("_", "").isalnum()
    assert (tmp_path / "rpc.token").read_text() == token + "\n"


def test_the_token_file_is_written_beside_itself_under_a_hidden_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linked (or renamed) into place: the temporary file must be in the same directory
    (one filesystem), and hidden from anyone listing it meanwhile."""
    from porch.http_server import rpc_auth

    moves: list[tuple[str, str]] = []
    link, replace = os.link, os.replace
    monkeypatch.setattr(rpc_auth.os, "link", lambda a, b: (moves.append((str(a), str(b))), link(a, b))[1])
    monkeypatch.setattr(rpc_auth.os, "replace", lambda a, b: (moves.append((str(a), str(b))), replace(a, b))[1])
    RpcToken(tmp_path).get()
    (tmp_path / "rpc.token").write_text("short\n")
    RpcToken(tmp_path).get()
    assert len(moves) == 2
    for tmp, target in moves:
        assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith(".rpc.token.")
        assert target == str(tmp_path / "rpc.token")


@pytest.mark.parametrize("length, kept", [(32, True), (31, False)])
def test_a_token_of_32_characters_is_kept_a_shorter_one_replaced(
        tmp_path: Path, length: int, kept: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="porch.http_server")
    path = tmp_path / "rpc.token"
    path.write_text("k" * length + "\n")
    token = RpcToken(tmp_path).get()
    assert (token == "k" * length) is kept
    warned = [r.getMessage() for r in caplog.records]
    assert warned == ([] if kept else [f"{path} holds no usable token; replacing it"])


def test_a_token_file_that_cannot_be_read_back_is_an_error_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RpcToken, "_read", lambda self: None)
    with pytest.raises(OSError, match=f"cannot read {tmp_path / 'rpc.token'} just written"):
        RpcToken(tmp_path).get()

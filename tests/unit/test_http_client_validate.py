"""docs/kinode.md §6.2 steps 1-3 and the header rules, without sockets."""

import pytest

from porch.http_client.headers import pascal_case, request_headers, response_headers, wire_value
from porch.http_client.validate import ParsedUrl, parse_absolute_url, valid_method, valid_version


@pytest.mark.parametrize("method", ["GET", "POST", "FOO", "get", "M-SEARCH", "X!#$%&'*+.^_`|~1"])
def test_extension_methods_are_tokens(method: str) -> None:
    assert valid_method(method)


@pytest.mark.parametrize("method", ["", "G ET", "GET\n", "GÉT", "GET/1", "(GET)", "a,b"])
def test_malformed_methods(method: str) -> None:
    assert not valid_method(method)


def test_versions_are_exactly_kinodes_five() -> None:
    for v in ("HTTP/0.9", "HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"):
        assert valid_version(v)
    for v in ("HTTP/4", "HTTP/2", "http/1.1", "", "HTTP/1.1 "):
        assert not valid_version(v)


@pytest.mark.parametrize("url, parsed", [
    ("http://example.com", ParsedUrl("http", "example.com", 80)),
    ("HTTPS://Example.COM:8443/a?b#c", ParsedUrl("https", "example.com", 8443)),
    ("http://[::1]:81/", ParsedUrl("http", "::1", 81)),
    ("http://user:pw@h/", ParsedUrl("http", "h", 80)),
    ("wss://h/ws", ParsedUrl("wss", "h", 443)),
    ("ftp://h/f", ParsedUrl("ftp", "h", 21)),
    ("mailto:someone@example.com", ParsedUrl("mailto", "", None)),
    ("http://b\u00fccher.example/", ParsedUrl("http", "b\u00fccher.example", 80)),
])
def test_absolute_urls(url: str, parsed: ParsedUrl) -> None:
    assert parse_absolute_url(url) == parsed


@pytest.mark.parametrize("url", [
    "", "not a url", "/relative", "example.com/x", "://x", "1http://x", "http://", "http:///x",
    "http://a b/", "http://h:99999/", "http://h:port/", "http://[::1", "http:x", " http://h/",
    "http://h/\n", "http://h<>/", "mailto:",
])
def test_bad_urls(url: str) -> None:
    assert parse_absolute_url(url) is None


@pytest.mark.parametrize("name, pascal", [
    ("content-type", "Content-Type"), ("x-foo-bar", "X-Foo-Bar"), ("ETAG", "Etag"),
    ("www-authenticate", "Www-Authenticate"), ("x--y", "X--Y"), ("a", "A"), ("", ""),
])
def test_pascal_case(name: str, pascal: str) -> None:
    assert pascal_case(name) == pascal


def test_request_headers_keep_order_and_repeats_and_skip_invalid() -> None:
    keep, skipped = request_headers([
        ("X-A", "1"), ("Bad Name", "x"), ("X-A", "2"), ("X-Inj", "a\r\nEvil: 1"), ("X-Nul", "a\0"),
        ("X-Tab", "a\tb"), ("content-length", "9"), ("Transfer-Encoding", "chunked"), ("", "v"),
    ])
    assert keep == [("X-A", "1"), ("X-A", "2"), ("X-Tab", "a\tb")]
    assert len(skipped) == 6


def test_non_latin1_values_go_out_as_utf8_bytes() -> None:
    sent = wire_value("caf\u00e9 \u2603")
    assert sent.encode("latin-1") == "caf\u00e9 \u2603".encode()
    assert wire_value("plain") == "plain"


def test_response_headers_pascal_case_repeats_and_utf8() -> None:
    raw = [("set-cookie", "a=1"), ("Set-Cookie", "b=2"), ("x-u", "caf\u00e9".encode().decode("latin-1")),
           ("x-latin", "\xe9t\xe9")]
    assert response_headers(raw) == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-U", "caf\u00e9"),
                                     ("X-Latin", "\xe9t\xe9")]


@pytest.mark.parametrize("url, parsed", [
    ("file:///etc/passwd", ParsedUrl("file", "", None)),
    ("FILE://fileserver/share/x", ParsedUrl("file", "fileserver", None)),
    ("file://h:21/x", ParsedUrl("file", "h", None)),  # no port of its own: none is kept
    ("file:relative", ParsedUrl("file", "", None)),
])
def test_file_urls_are_well_formed_without_a_port(url: str, parsed: ParsedUrl) -> None:
    """file: needs no authority (it fails later, when the request is built)."""
    assert parse_absolute_url(url) == parsed


@pytest.mark.parametrize("scheme", ["http", "https", "ws", "wss", "ftp", "HTTPS", "Ws"])
@pytest.mark.parametrize("rest", ["", "h", "/h/x", "//", "///x", "//:80/", "//@/x"])
def test_special_schemes_need_two_slashes_and_a_host(scheme: str, rest: str) -> None:
    assert parse_absolute_url(f"{scheme}:{rest}") is None


@pytest.mark.parametrize("char", sorted(set(" <>\\^|%\"`{}")))
def test_each_forbidden_host_character_alone_makes_a_bad_url(char: str) -> None:
    assert parse_absolute_url(f"http://a{char}b.example/") is None
    assert parse_absolute_url(f"x-custom://a{char}b/") is None


@pytest.mark.parametrize("url, port", [
    ("http://h/", 80), ("https://h/", 443), ("ws://h/", 80), ("wss://h/", 443), ("ftp://h/", 21),
    ("gopher://h/", None), ("http://h:0/", 0), ("wss://h:65535/", 65535),
])
def test_each_scheme_default_port(url: str, port: int | None) -> None:
    parsed = parse_absolute_url(url)
    assert parsed is not None and parsed.port == port


def test_skipped_headers_say_which_and_why() -> None:
    keep, skipped = request_headers([("Bad Name", "x"), ("X-Inj", "a\r\nb"), ("Content-Length", "3")])
    assert keep == []
    assert skipped == ["'Bad Name': invalid name", "X-Inj: invalid value",
                       "Content-Length: set by the client from the blob"]


@pytest.mark.parametrize("value", ["a b", " ", "\t", "~", "\x80", "\xff", "caf\u00e9", "\u2603"])
def test_header_values_may_hold_spaces_tabs_and_non_ascii(value: str) -> None:
    assert request_headers([("X-V", value)])[1] == []


@pytest.mark.parametrize("value", ["\x00", "\x1f", "\x7f", "a\rb", "a\nb", "\x0b"])
def test_control_characters_and_del_make_a_header_value_invalid(value: str) -> None:
    assert request_headers([("X-V", value)])[0] == []

"""The http-client's wire shapes (docs/kinode.md §6.3, §6.4, §6.6) and the stub's reading of them."""

import pytest

import porch
from porch.http.client import (
    Headers,
    HttpClientError,
    WsClose,
    WsPush,
    http_action,
    parse_response,
    parse_ws_message,
    ws_push_action,
)
from porch.http_client import results
from porch.wire import http_pb2

CLIENT = porch.HTTP_CLIENT


def reply(body: bytes, blob: bytes | None = None) -> porch.Message:
    return porch.Message(1, CLIENT, "a:b:c", False, body, porch.Blob(blob) if blob is not None else None)


def test_http_ok_round_trip_keeps_repeated_headers() -> None:
    body = results.http_ok(201, [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-A", "x")])
    resp = parse_response(reply(body, b"created"))
    assert resp.status == 201 and resp.body == b"created" and resp.text == "created"
    assert resp.headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert resp.headers.get("SET-COOKIE") == "b=2" and resp.headers["x-a"] == "x"  # the last (one rule)
    assert "x-a" in resp.headers and "x-b" not in resp.headers
    assert list(resp.headers) == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-A", "x")]
    with pytest.raises(KeyError):
        resp.headers["missing"]


def test_errors_carry_kinodes_fields() -> None:
    cases = [
        (results.error("BadUrl", url="nope"), ("BadUrl", "url", "nope")),
        (results.error("BadMethod", method="G ET"), ("BadMethod", "method", "G ET")),
        (results.error("BadVersion", version="HTTP/4"), ("BadVersion", "version", "HTTP/4")),
        (results.error("WsCloseFailed", channel_id=7), ("WsCloseFailed", "channel_id", 7)),
        (results.error("ExecuteRequestFailed", message="refused"),
         ("ExecuteRequestFailed", "message", "refused")),
    ]
    for body, (kind, field, value) in cases:
        with pytest.raises(HttpClientError) as err:
            parse_response(reply(body))
        assert err.value.kind == kind
        assert getattr(err.value, field) == value
    assert results.failure(results.ClientFailure("WsPushNoBlob")) == results.error("WsPushNoBlob")


def test_a_typo_in_an_error_kind_fails_loudly() -> None:
    with pytest.raises(ValueError):
        results.ClientFailure("BadURL")


def test_unexpected_answers() -> None:
    for body in (results.WS_ACK, b"\xff\xff", b""):
        with pytest.raises(HttpClientError) as err:
            parse_response(reply(body))
        assert err.value.kind == "UnexpectedResponse"


def test_decode_action() -> None:
    assert results.decode_action(b"\xff\x00junk") is None
    assert results.decode_action(b"") is None  # no variant set
    action = results.decode_action(http_action("GET", "http://h/", {"A": "1"}, version="HTTP/1.1"))
    assert action is not None and action.http.method == "GET"
    assert [(h.name, h.value) for h in action.http.headers] == [("A", "1")]
    assert action.http.version == "HTTP/1.1"
    assert not results.decode_action(http_action("GET", "http://h/")).http.HasField("version")  # type: ignore[union-attr]
    push = results.decode_action(ws_push_action(3, "Close"))
    assert push is not None and push.web_socket_push.message_type == http_pb2.WsMessageType.Value("Close")
    with pytest.raises(ValueError):
        ws_push_action(3, "Texte")


def test_incoming_websocket_messages() -> None:
    def req(body: bytes, blob: porch.Blob | None = None, source: str = CLIENT) -> porch.Message:
        return porch.Message(9, source, "a:b:c", True, body, blob)

    blob = porch.Blob(b"hi", "text/plain")
    assert parse_ws_message(req(results.ws_push(4, http_pb2.WsMessageType.Value("Text")), blob)) == \
        WsPush(4, "Text", blob)
    assert parse_ws_message(req(results.ws_close(4))) == WsClose(4)
    assert parse_ws_message(req(results.ws_close(4), source="x:y:z")) is None
    assert parse_ws_message(req(b"\xff")) is None


def test_headers_accepts_any_pairs() -> None:
    h = Headers([("A", "1")])
    assert len(h) == 1 and h.items() == [("A", "1")] and h.get("b", "d") == "d"

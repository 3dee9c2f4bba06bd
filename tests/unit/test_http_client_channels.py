"""WebSocket bookkeeping: (process, channel) keys, generations, cancelled handshakes,
and frames that arrive before the WebSocketAck; what a stop tells openers and records."""

from pathlib import Path

from porch.http_client.channels import ChannelTable
from porch.http_client.policy import OutgoingPolicy
from porch.http_client.record import Opened, WsRecord
from porch.http_client.results import WS_ACK, ws_close, ws_push
from porch.http_client.websockets import Link, WsClients
from porch.process.message import Blob, Message
from porch.wire import http_pb2

A = ("a:demo:sys", 1)
B = ("b:demo:sys", 1)


def test_same_channel_in_two_processes_is_two_entries() -> None:
    t: ChannelTable[str] = ChannelTable()
    ga, gb = t.begin(A), t.begin(B)
    assert len(t) == 2  # handshakes count toward the cap
    assert t.complete(A, ga, "conn-a", 10, "ws://a")[0] is not None
    assert t.complete(B, gb, "conn-b", 11, "ws://b")[0] is not None
    assert (t.get(A).conn, t.get(B).conn) == ("conn-a", "conn-b")  # type: ignore[union-attr]
    t.remove(A)
    assert t.get(A) is None and t.get(B) is not None and len(t) == 1


def test_reopen_is_never_removed_by_the_old_connections_close() -> None:
    t: ChannelTable[str] = ChannelTable()
    g1 = t.begin(A)
    t.complete(A, g1, "old", 1, "u")
    g2 = t.begin(A)
    entry, replaced = t.complete(A, g2, "new", 2, "u")
    assert entry is not None and replaced is not None and replaced.conn == "old"
    assert t.remove_if_current(A, g1) is None  # the old one's close: stale, ignored
    assert t.get(A).conn == "new"  # type: ignore[union-attr]
    assert t.remove_if_current(A, g2) is not None
    assert t.get(A) is None


def test_older_handshake_finishing_last_loses() -> None:
    t: ChannelTable[str] = ChannelTable()
    g1, g2 = t.begin(A), t.begin(A)
    assert t.complete(A, g2, "newer", 2, "u")[0] is not None
    assert t.cancelled(A, g1)
    assert t.complete(A, g1, "older", 1, "u") == (None, None)
    assert t.get(A).conn == "newer"  # type: ignore[union-attr]


def test_close_cancels_a_handshake_in_progress_but_not_a_later_open() -> None:
    t: ChannelTable[str] = ChannelTable()
    g1 = t.begin(A)
    entry, cancelled = t.remove(A)
    assert entry is None and cancelled
    g2 = t.begin(A)
    assert t.complete(A, g1, "late", 1, "u") == (None, None)
    assert t.complete(A, g2, "fresh", 2, "u")[0] is not None
    assert t.remove(A)[0] is not None
    assert t.remove(A) == (None, False)  # nothing open, nothing pending: WsCloseFailed


def test_process_exit_removes_its_entries_and_cancels_its_handshakes() -> None:
    t: ChannelTable[str] = ChannelTable()
    t.complete(A, t.begin(A), "a1", 1, "u")
    a2 = ("a:demo:sys", 2)
    pending = t.begin(a2)
    t.complete(B, t.begin(B), "b1", 3, "u")
    assert [e.conn for e in t.remove_process("a:demo:sys")] == ["a1"]
    assert t.complete(a2, pending, "late", 4, "u") == (None, None)
    assert [e.conn for e in t.entries()] == ["b1"]
    # A new life of the same process opens normally.
    assert t.complete(A, t.begin(A), "again", 5, "u")[0] is not None


def test_failed_handshake_frees_its_slot() -> None:
    t: ChannelTable[str] = ChannelTable()
    t.begin(A)
    assert len(t) == 1
    t.fail(A)
    assert len(t) == 0


def test_two_handshakes_of_one_channel_are_two_slots_until_each_ends() -> None:
    t: ChannelTable[str] = ChannelTable()
    g1, g2 = t.begin(A), t.begin(A)
    assert len(t) == 2
    t.fail(A)
    assert len(t) == 1
    entry, _ = t.complete(A, g2, "conn", 5, "ws://h/")
    assert entry is not None and len(t) == 1
    assert t.complete(A, g1, "late", 6, "ws://h/") == (None, None)  # (superseded)
    assert len(t) == 1


def test_the_installed_entry_is_what_the_open_asked_for() -> None:
    t: ChannelTable[str] = ChannelTable()
    g = t.begin(A)
    entry, replaced = t.complete(A, g, "conn", 42, "wss://h/x")
    assert entry is not None and replaced is None
    assert (entry.key, entry.generation, entry.conn, entry.open_id, entry.url) == (A, g, "conn", 42, "wss://h/x")
    assert t.get(A) is entry


def test_only_the_generation_in_the_table_is_current() -> None:
    t: ChannelTable[str] = ChannelTable()
    g1 = t.begin(A)
    assert not t.is_current(A, g1), "a handshake is not a connection yet"
    t.complete(A, g1, "old", 1, "u")
    assert t.is_current(A, g1)
    g2 = t.begin(A)
    t.complete(A, g2, "new", 2, "u")
    assert t.is_current(A, g2) and not t.is_current(A, g1)
    assert not t.is_current(B, g2)


def test_a_handshake_is_cancelled_only_by_a_close_a_death_or_a_newer_open() -> None:
    t: ChannelTable[str] = ChannelTable()
    g1 = t.begin(A)
    assert not t.cancelled(A, g1), "nothing happened to it"
    gb = t.begin(B)
    t.remove(A)  # the opener closes the channel while it connects
    assert t.cancelled(A, g1)
    assert not t.cancelled(B, gb), "another process's channel is untouched"
    g2 = t.begin(A)
    assert not t.cancelled(A, g2), "an open after the close is not cancelled by it"
    t.remove_process("b:demo:sys")
    assert t.cancelled(B, gb)
    assert not t.cancelled(A, g2), "another process's death is not this one's"
    t.complete(A, g2, "conn", 1, "u")
    g3 = t.begin(A)
    assert not t.cancelled(A, g3) and t.cancelled(A, g1), "older than the connection installed"


def test_a_dead_process_s_handshakes_all_stay_cancelled_until_the_last_ends() -> None:
    a1, a2 = ("a:demo:sys", 1), ("a:demo:sys", 2)
    t: ChannelTable[str] = ChannelTable()
    t.begin(a1)
    g2 = t.begin(a2)
    t.remove_process("a:demo:sys")
    t.fail(a1)  # one of them ends: the other is still of the dead process
    assert t.cancelled(a2, g2)
    assert t.complete(a2, g2, "late", 1, "u") == (None, None)
    assert t.entries() == [] and len(t) == 0


def test_bookkeeping_is_dropped_when_no_handshake_is_pending() -> None:
    """A process opening and closing channels forever leaves no floor behind (memory
    stays bounded by what is open or connecting)."""
    t: ChannelTable[str] = ChannelTable()
    g = t.begin(A)
    t.begin(B)
    t.remove(A)
    t.remove_process("b:demo:sys")
    t.complete(A, g, "late", 1, "u")
    t.fail(B)
    assert (t._pending, t._key_floor, t._process_floor) == ({}, {}, {})
    # A death with nothing of its own pending sets no floor at all.
    t.complete(A, t.begin(A), "conn", 2, "u")
    t.begin(B)
    t.remove_process("a:demo:sys")
    assert t._process_floor == {}
    t.fail(B)
    assert (t._pending, t._key_floor, t._process_floor) == ({}, {}, {})


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Blob | None, int]] = []
        self.responses: list[bytes] = []
        self.unreachable: set[str] = set()  # processes the kernel will not take messages for

    def send(self, target: str, body: bytes, blob: Blob | None, id_: int) -> bool:
        if target in self.unreachable:
            return False
        self.sent.append((target, body, blob, id_))
        return True

    def clients(self, record: WsRecord | None = None) -> WsClients:
        return WsClients(lambda msg, body: self.responses.append(body), self.send,
                         lambda pid, cb: None, policy=OutgoingPolicy(), max_connections=4,
                         max_message_bytes=1024, send_queue_bytes=4096,
                         deadline_s=lambda msg: 5.0, record=record)


def test_frames_before_the_ack_are_delivered_after_it_in_order() -> None:
    rec = Recorder()
    ws = rec.clients()
    link = Link(A, ws.table.begin(A), open_id=42, url="ws://h/")
    ws._frame(link, http_pb2.WsMessageType.Text, b"first")
    ws._frame(link, http_pb2.WsMessageType.Binary, b"second")
    ws._frame(link, 0, None)  # and it closed, all before the handshake was seen as done
    assert rec.sent == []
    ws.table.complete(A, link.generation, link, 42, "ws://h/")
    ws._activate(link)
    text, binary = http_pb2.WsMessageType.Text, http_pb2.WsMessageType.Binary
    assert rec.sent == [
        ("a:demo:sys", ws_push(1, text), Blob(b"first", "text/plain"), 42),
        ("a:demo:sys", ws_push(1, binary), Blob(b"second", "application/octet-stream"), 42),
        ("a:demo:sys", ws_close(1), None, 42),
    ]
    assert ws.table.get(A) is None


def test_actions_on_unknown_channels() -> None:
    rec = Recorder()
    ws = rec.clients()
    msg = Message(7, "a:demo:sys", "http-client:distro:sys", True, b"", None, None, True, 0)
    action = http_pb2.HttpClientAction()
    action.web_socket_close.channel_id = 9
    ws.handle(msg, action)
    err = http_pb2.HttpClientResult.FromString(rec.responses[-1]).err
    assert (http_pb2.HttpClientError.Kind.Name(err.kind), err.channel_id) == ("WsCloseFailed", 9)
    action = http_pb2.HttpClientAction()
    action.web_socket_push.channel_id = 9
    action.web_socket_push.message_type = http_pb2.WsMessageType.Value("Text")
    ws.handle(msg, action)
    err = http_pb2.HttpClientResult.FromString(rec.responses[-1]).err
    assert http_pb2.HttpClientError.Kind.Name(err.kind) == "WsPushUnknownChannel"
    assert WS_ACK not in rec.responses


def test_open_past_the_cap_is_refused_before_connecting() -> None:
    rec = Recorder()
    ws = rec.clients()  # max_connections=4
    for channel in range(4):
        ws.table.begin(("x:demo:sys", channel))  # handshakes in progress count
    msg = Message(8, "a:demo:sys", "http-client:distro:sys", True, b"", None, None, True, 0)
    action = http_pb2.HttpClientAction()
    action.web_socket_open.url = "ws://127.0.0.1:9/ws"
    action.web_socket_open.channel_id = 1
    ws.handle(msg, action)
    err = http_pb2.HttpClientResult.FromString(rec.responses[-1]).err
    assert http_pb2.HttpClientError.Kind.Name(err.kind) == "WsOpenFailed"
    assert err.url == "ws://127.0.0.1:9/ws" and "max 4" in err.message
    assert len(ws.table) == 4


def _install(ws: WsClients, key: tuple[str, int], open_id: int) -> None:
    link = Link(key, ws.table.begin(key), open_id=open_id, url="ws://h/")
    ws.table.complete(key, link.generation, link, open_id, "ws://h/")
    link.installed = True


def test_stop_tells_every_opener_and_records_only_who_could_not_be_told(tmp_path: Path) -> None:
    rec = Recorder()
    record = WsRecord(tmp_path / "ws.json")
    ws = rec.clients(record)
    _install(ws, ("a:demo:sys", 1), 11)
    _install(ws, ("a:demo:sys", 2), 12)
    _install(ws, ("b:demo:sys", 1), 21)
    rec.unreachable.add("b:demo:sys")
    ws.close_all()
    assert sorted(rec.sent) == [("a:demo:sys", ws_close(1), None, 11),
                                ("a:demo:sys", ws_close(2), None, 12)]
    assert len(ws.table) == 0
    # The next start tells the one the kernel could not take the close for, and only it.
    rec2 = Recorder()
    assert rec2.clients(WsRecord(tmp_path / "ws.json")).announce_lost() == 1
    assert rec2.sent == [("b:demo:sys", ws_close(1), None, 21)]
    assert not (tmp_path / "ws.json").exists()
    assert Recorder().clients(WsRecord(tmp_path / "ws.json")).announce_lost() == 0


def test_opened_lists_installed_connections_not_handshakes() -> None:
    ws = Recorder().clients()
    _install(ws, ("a:demo:sys", 1), 11)
    ws.table.begin(("a:demo:sys", 2))
    assert ws.opened() == [Opened("a:demo:sys", 1, 11)]

"""The record of open outgoing WebSockets: what a killed http-client leaves for the next
one, read back whole or not at all, and never a stale or empty file."""

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest

from porch.http_client.record import Opened, WsRecord

A1 = Opened("a:demo:sys", 1, 77)
A2 = Opened("a:demo:sys", 2, 78)
B1 = Opened("b:demo:sys", 1, 2**64 - 1)


def test_written_set_is_taken_back_once(tmp_path: Path) -> None:
    path = tmp_path / "ws.json"
    WsRecord(path).write_now([A2, B1, A1])
    assert os.stat(path).st_mode & 0o777 == 0o600
    record = WsRecord(path)
    assert record.take() == [A1, A2, B1]
    assert not path.exists()
    assert record.take() == []


def test_an_empty_set_is_no_file(tmp_path: Path) -> None:
    path = tmp_path / "ws.json"
    record = WsRecord(path)
    record.write_now([A1])
    assert path.exists()
    record.write_now([])
    assert not path.exists()
    record.write_now([])
    assert not path.exists()


def test_state_dir_is_created_if_missing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ws.json"
    WsRecord(path).write_now([A1])
    assert WsRecord(path).take() == [A1]


@pytest.mark.parametrize("content", [
    b"not json",
    b'{"process": "a:demo:sys"}',
    b'[{"process": "a:demo:sys", "channel_id": 1}]',
    b'[{"process": "a:demo:sys", "channel_id": "1", "open_id": 2}]',
    b'[{"process": "a:demo:sys", "channel_id": -1, "open_id": 2}]',
    b'[{"process": "a:demo:sys", "channel_id": 4294967296, "open_id": 2}]',
    b'[{"process": "a:demo:sys", "channel_id": 1, "open_id": 18446744073709551616}]',
    b'[{"process": 5, "channel_id": 1, "open_id": 2}]',
    b'[{"process": "a:demo:sys", "channel_id": true, "open_id": 2}]',
    b'[[1, 2, 3]]',
])
def test_a_damaged_record_is_reported_and_removed(tmp_path: Path, content: bytes,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ws.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, "porch.http_client"):
        assert WsRecord(path).take() == []
    assert "ignoring" in caplog.text
    assert not path.exists()


def test_scheduled_writes_are_debounced_and_write_the_latest_set(tmp_path: Path) -> None:
    path = tmp_path / "ws.json"
    current: list[Opened] = []
    calls = 0

    def snapshot() -> list[Opened]:
        nonlocal calls
        calls += 1
        return list(current)

    async def run() -> None:
        record = WsRecord(path, delay=0.05)
        current.append(A1)
        record.schedule(snapshot)
        current.append(A2)
        record.schedule(snapshot)
        assert not path.exists()  # not at once
        for _ in range(200):
            if path.exists():
                break
            await asyncio.sleep(0.01)
        assert calls == 1
        assert [e["channel_id"] for e in json.loads(path.read_bytes())] == [1, 2]
        # write_now cancels what is scheduled: a stop's record is not overwritten later.
        current.clear()
        record.schedule(snapshot)
        record.write_now([B1])
        await asyncio.sleep(0.15)
        assert calls == 1
        assert WsRecord(path).take() == [B1]

    asyncio.run(run())


def test_channel_and_open_id_zero_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "ws.json"
    path.write_bytes(b'[{"process": "a:demo:sys", "channel_id": 0, "open_id": 0}]')
    assert WsRecord(path).take() == [Opened("a:demo:sys", 0, 0)]


def test_a_crash_loses_at_most_the_last_half_second_of_opens(tmp_path: Path) -> None:
    assert WsRecord(tmp_path / "ws.json").delay <= 0.5


def test_the_state_dir_is_created_private_with_its_parents(tmp_path: Path) -> None:
    path = tmp_path / "home" / "state" / "ws.json"
    WsRecord(path).write_now([A1])
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert WsRecord(path).take() == [A1]


def test_an_unchanged_set_is_not_written_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is written when the set has not changed since the last write, and a new
    record (or one just taken) has written nothing: a file it did not write is left alone."""
    import porch.http_client.record as record_module

    writes: list[bytes] = []
    real = record_module.write_atomic
    monkeypatch.setattr(record_module, "write_atomic",
                        lambda p, data: (writes.append(data), real(p, data)))
    path = tmp_path / "ws.json"
    record = WsRecord(path)
    record.write_now([A1, A2])
    record.write_now([A2, A1])
    assert len(writes) == 1
    path.unlink()
    record.write_now([A1, A2])
    assert not path.exists(), "the set did not change: not written again"

    path.write_bytes(b"not mine")
    WsRecord(path).write_now([])
    assert path.read_bytes() == b"not mine"
    taken = WsRecord(path)
    assert taken.take() == []  # (not a record: reported and removed)
    path.write_bytes(b"not mine either")
    taken.write_now([])
    assert path.read_bytes() == b"not mine either"


def test_a_record_removed_behind_its_back_is_no_error(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ws.json"
    record = WsRecord(path)
    record.write_now([A1])
    path.unlink()
    with caplog.at_level(logging.WARNING, "porch.http_client"):
        record.write_now([])
    assert caplog.records == []


def test_a_failed_write_is_reported_with_the_path_and_tried_again(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "state"
    blocker.write_bytes(b"a file where the directory should be")
    path = blocker / "ws.json"
    record = WsRecord(path)
    with caplog.at_level(logging.WARNING, "porch.http_client"):
        record.write_now([A1])
    [line] = caplog.records
    assert f"{path}: " in line.getMessage() and "File exists" in line.getMessage()
    blocker.unlink()
    record.write_now([A1])  # the same set, but it was never written: written now
    assert WsRecord(path).take() == [A1]


def test_an_unreadable_record_is_reported_with_the_path_and_why(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ws.json"
    path.mkdir()  # reading it fails, and not because it is missing
    with caplog.at_level(logging.WARNING, "porch.http_client"):
        assert WsRecord(path).take() == []
    [line] = caplog.records
    assert f"{path}: " in line.getMessage() and "Is a directory" in line.getMessage()


def test_a_damaged_record_is_reported_with_the_path_and_why(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ws.json"
    path.write_bytes(b'{"process": "a"}')
    with caplog.at_level(logging.WARNING, "porch.http_client"):
        WsRecord(path).take()
    [line] = caplog.records
    assert f"{path}, " in line.getMessage() and "not a list" in line.getMessage()


def test_a_write_now_does_not_stop_later_scheduled_writes(tmp_path: Path) -> None:
    path = tmp_path / "ws.json"

    async def run() -> None:
        record = WsRecord(path, delay=0.01)
        record.schedule(lambda: [A1])
        record.write_now([A2])
        record.schedule(lambda: [B1])
        for _ in range(500):
            if WsRecord(path).take() == [B1]:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the write scheduled after write_now never happened")

    asyncio.run(run())

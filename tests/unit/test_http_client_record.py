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

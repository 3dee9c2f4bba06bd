"""porch.throttle.Every: one log line per interval, counting what it stands for."""

from __future__ import annotations

import pytest

from porch import throttle


def test_a_line_per_interval_with_the_count_since_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(throttle.time, "monotonic", lambda: clock[0])
    every = throttle.Every(1.0)
    assert every.due() == 1, "the first event is due"
    assert [every.due() for _ in range(3)] == [0, 0, 0]
    clock[0] += 0.99
    assert every.due() == 0
    clock[0] += 0.02
    assert every.due() == 5, "the line counts every event since the last one"
    assert every.due() == 0

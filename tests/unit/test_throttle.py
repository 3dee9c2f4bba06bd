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


def test_the_first_event_is_due_even_when_the_clock_is_near_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """time.monotonic() may start near 0 (shortly after boot): the first line still goes out."""
    monkeypatch.setattr(throttle.time, "monotonic", lambda: 0.0)
    assert throttle.Every(1.0).due() == 1


def test_a_line_is_due_exactly_one_interval_after_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [50.0]
    monkeypatch.setattr(throttle.time, "monotonic", lambda: clock[0])
    every = throttle.Every()  # the default interval: one second
    assert every.due() == 1
    clock[0] += 0.5
    assert every.due() == 0
    clock[0] += 0.5
    assert every.due() == 2

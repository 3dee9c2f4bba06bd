"""porch.link.blocking_dealer.PollLoop, in-process: the few asyncio calls a held
WebSocket (porch.process.held) needs, run by a blocking process's own poll(2)
(docs/websockets.md, "How a socket is handed over" step 4). A real select.poll on
socket pairs shows what is registered (poll reports only the events asked for); a fake
clock stands in for time.monotonic, so timers are exact and nothing sleeps."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator

import pytest

from porch.link import blocking_dealer
from porch.link.blocking_dealer import BlockingDealer, PollLoop

POLLIN, POLLOUT, POLLHUP, POLLERR = select.POLLIN, select.POLLOUT, select.POLLHUP, select.POLLERR


class Clock:
    """Stands in for the `time` module PollLoop reads (monotonic only)."""

    def __init__(self) -> None:
        self.now = 1024.0  # with binary fractions below, every sum is exact

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(blocking_dealer, "time", fake)
    return fake


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A socket pair whose first end is readable (a byte waits) and writable."""
    ours, theirs = socket.socketpair()
    theirs.send(b"x")
    yield ours, theirs
    ours.close()
    theirs.close()


def polled(poll: select.poll, fd: int) -> int:
    """The events poll(2) reports for fd now (0: none, or not registered)."""
    return dict(poll.poll(0)).get(fd, 0)


def noop() -> None:
    pass


# ---------------------------------------------------------------------- registration

def test_a_reader_alone_is_polled_for_input_only(pair: tuple[socket.socket, socket.socket]) -> None:
    poll = select.poll()
    loop = PollLoop(poll)
    fd = pair[0].fileno()
    loop.add_reader(fd, noop)
    assert polled(poll, fd) == POLLIN, "the socket is writable too, but only input was asked for"
    assert loop.watches(fd)


def test_a_writer_alone_is_polled_for_room_only(pair: tuple[socket.socket, socket.socket]) -> None:
    poll = select.poll()
    loop = PollLoop(poll)
    fd = pair[0].fileno()
    loop.add_writer(fd, noop)
    assert polled(poll, fd) == POLLOUT, "a byte waits, but only room was asked for"
    assert loop.watches(fd)


def test_a_reader_and_a_writer_share_one_registration(pair: tuple[socket.socket, socket.socket]) -> None:
    poll = select.poll()
    loop = PollLoop(poll)
    fd = pair[0].fileno()
    loop.add_reader(fd, noop)
    loop.add_writer(fd, noop)  # a second add is a modify, not a second register
    assert polled(poll, fd) == POLLIN | POLLOUT
    loop.add_writer(fd, noop)  # replacing a callback keeps the mask
    assert polled(poll, fd) == POLLIN | POLLOUT


def test_removing_the_writer_keeps_the_reader_and_the_other_way_round(
        pair: tuple[socket.socket, socket.socket]) -> None:
    poll = select.poll()
    loop = PollLoop(poll)
    fd = pair[0].fileno()
    loop.add_reader(fd, noop)
    loop.add_writer(fd, noop)
    assert loop.remove_writer(fd) is True
    assert polled(poll, fd) == POLLIN
    loop.add_writer(fd, noop)
    assert loop.remove_reader(fd) is True
    assert polled(poll, fd) == POLLOUT
    assert loop.watches(fd)


def test_removing_both_unregisters_the_fd_and_a_second_removal_says_false(
        pair: tuple[socket.socket, socket.socket]) -> None:
    poll = select.poll()
    loop = PollLoop(poll)
    fd = pair[0].fileno()
    loop.add_reader(fd, noop)
    loop.add_writer(fd, noop)
    assert (loop.remove_reader(fd), loop.remove_writer(fd)) == (True, True)
    assert poll.poll(0) == [] and not loop.watches(fd)
    assert (loop.remove_reader(fd), loop.remove_writer(fd)) == (False, False), "nothing was there"
    loop.add_reader(fd, noop)  # registered afresh after an unregister
    assert polled(poll, fd) == POLLIN


def test_removing_what_was_never_added_leaves_the_poll_alone(pair: tuple[socket.socket, socket.socket]) -> None:
    """remove_reader of an fd that poll does not know (WsConnection._finish removes
    its reader even when it never added one) is a quiet False."""
    poll = select.poll()
    loop = PollLoop(poll)
    fd = pair[0].fileno()
    assert loop.remove_reader(fd) is False and loop.remove_writer(fd) is False
    assert poll.poll(0) == []


# ---------------------------------------------------------------------- dispatch

def test_dispatch_runs_the_writer_before_the_reader(pair: tuple[socket.socket, socket.socket]) -> None:
    loop = PollLoop(select.poll())
    fd = pair[0].fileno()
    order: list[str] = []
    loop.add_reader(fd, order.append, "reader")
    loop.add_writer(fd, order.append, "writer")
    loop.dispatch(fd, POLLIN | POLLOUT)
    assert order == ["writer", "reader"]


@pytest.mark.parametrize(("events", "called"), [
    (POLLIN, ["reader"]),
    (POLLOUT, ["writer"]),
    (POLLHUP, ["reader"]),
    (POLLERR, ["reader"]),
    (POLLOUT | POLLHUP, ["writer", "reader"]),
    (POLLOUT | POLLERR, ["writer", "reader"]),
])
def test_eof_and_errors_go_to_the_reader(pair: tuple[socket.socket, socket.socket], events: int,
                                        called: list[str]) -> None:
    """The reader's recv finds out whether it was input, an EOF or an error; the
    writer is called for room only."""
    loop = PollLoop(select.poll())
    fd = pair[0].fileno()
    order: list[str] = []
    loop.add_reader(fd, order.append, "reader")
    loop.add_writer(fd, order.append, "writer")
    loop.dispatch(fd, events)
    assert order == called


def test_a_peer_that_hangs_up_wakes_the_reader(pair: tuple[socket.socket, socket.socket]) -> None:
    poll = select.poll()
    loop = PollLoop(poll)
    ours, theirs = pair
    fd = ours.fileno()
    ours.recv(1)  # nothing left to read: only the hang-up can wake it
    got: list[bytes] = []
    loop.add_reader(fd, lambda: got.append(ours.recv(10)))
    theirs.close()
    [(woken, events)] = poll.poll(1000)
    assert woken == fd and events & POLLHUP
    loop.dispatch(woken, events)
    assert got == [b""], "the reader saw the EOF"


def test_dispatch_without_a_callback_for_the_event_does_nothing(
        pair: tuple[socket.socket, socket.socket]) -> None:
    loop = PollLoop(select.poll())
    fd = pair[0].fileno()
    order: list[str] = []
    loop.add_writer(fd, order.append, "writer")
    loop.dispatch(fd, POLLIN)  # no reader
    loop.dispatch(fd + 1000, POLLIN | POLLOUT)  # an fd it does not watch
    assert order == []


# ---------------------------------------------------------------------- call_soon, call_later

def test_call_soon_runs_in_order_with_its_arguments(clock: Clock) -> None:
    loop = PollLoop(select.poll())
    got: list[tuple[str, int]] = []
    loop.call_soon(lambda a, b: got.append((a, b)), "first", 1)
    cancelled = loop.call_soon(lambda: got.append(("cancelled", 0)))
    loop.call_soon(lambda a, b: got.append((a, b)), "second", 2)
    cancelled.cancel()
    assert loop.has_due()
    loop.run_due()
    assert got == [("first", 1), ("second", 2)]
    assert not loop.has_due()


def test_what_a_callback_schedules_with_call_soon_waits_for_the_next_round(clock: Clock) -> None:
    """Else a callback that schedules itself again would never let the poll run."""
    loop = PollLoop(select.poll())
    got: list[str] = []

    def first() -> None:
        got.append("first")
        loop.call_soon(got.append, "added meanwhile")

    loop.call_soon(first)
    loop.call_soon(got.append, "second")
    loop.run_due()
    assert got == ["first", "second"]
    assert loop.has_due() and loop.wait_ms(500) == 0
    loop.run_due()
    assert got == ["first", "second", "added meanwhile"]


def test_timers_run_when_due_in_time_order_ties_in_call_order(clock: Clock) -> None:
    loop = PollLoop(select.poll())
    got: list[str] = []
    loop.call_later(0.375, got.append, "0.375")
    loop.call_later(0.125, got.append, "0.125 a")
    loop.call_later(0.25, got.append, "0.25")
    loop.call_later(0.125, got.append, "0.125 b")
    loop.run_due()
    assert got == [] and not loop.has_due()
    clock.now += 0.25
    assert loop.has_due()
    loop.run_due()
    assert got == ["0.125 a", "0.125 b", "0.25"]
    clock.now += 0.125
    loop.run_due()
    assert got == ["0.125 a", "0.125 b", "0.25", "0.375"]
    assert not loop.has_due() and loop.wait_ms(500) == 500


def test_a_cancelled_timer_never_runs(clock: Clock) -> None:
    loop = PollLoop(select.poll())
    got: list[str] = []
    loop.call_later(0.125, got.append, "kept")
    loop.call_later(0.125, got.append, "cancelled").cancel()
    clock.now += 1
    loop.run_due()
    assert got == ["kept"]


def test_a_timer_cancelled_by_an_earlier_callback_of_the_same_round_does_not_run(clock: Clock) -> None:
    """WsConnection._finish cancels its close timer: that timer may be due in the
    same round as the callback that finished it."""
    loop = PollLoop(select.poll())
    got: list[str] = []
    later = loop.call_later(0.25, got.append, "cancelled")

    def cancels() -> None:
        got.append("cancels")
        later.cancel()

    loop.call_later(0.125, cancels)
    clock.now += 1
    loop.run_due()
    assert got == ["cancels"]


def test_call_soon_runs_before_the_timers_that_came_due(clock: Clock) -> None:
    loop = PollLoop(select.poll())
    got: list[str] = []
    loop.call_later(0.0, got.append, "timer")
    loop.call_soon(got.append, "soon")
    loop.run_due()
    assert got == ["soon", "timer"]


def test_time_is_monotonic(clock: Clock) -> None:
    loop = PollLoop(select.poll())
    assert loop.time() == 1024.0


# ---------------------------------------------------------------------- wait_ms, has_due

def test_wait_ms_is_the_callers_when_nothing_is_scheduled(clock: Clock) -> None:
    loop = PollLoop(select.poll())
    assert loop.wait_ms(500) == 500 and loop.wait_ms(0) == 0
    assert not loop.has_due()


def test_wait_ms_is_0_while_a_callback_is_ready(clock: Clock) -> None:
    loop = PollLoop(select.poll())
    loop.call_soon(noop)
    assert loop.wait_ms(500) == 0 and loop.has_due()


def test_wait_ms_is_shortened_to_the_next_timer_rounded_up(clock: Clock) -> None:
    """Rounded up: a poll that wakes a fraction of a millisecond early would find
    nothing due and go round once more for nothing."""
    loop = PollLoop(select.poll())
    loop.call_later(0.125, noop)
    loop.call_later(0.0625, noop)  # 62.5 ms
    assert loop.wait_ms(500) == 63
    assert loop.wait_ms(10) == 10, "never longer than the caller's"
    clock.now += 0.0615234375  # 61.5234375 ms: 0.9765625 ms left
    assert loop.wait_ms(500) == 1 and not loop.has_due()
    clock.now += 0.0009765625
    assert loop.wait_ms(500) == 0 and loop.has_due()
    clock.now += 8
    assert loop.wait_ms(500) == 0, "a timer long overdue is 0, not negative"


def test_wait_ms_skips_cancelled_timers(clock: Clock) -> None:
    loop = PollLoop(select.poll())
    loop.call_later(0.125, noop).cancel()
    loop.call_later(0.25, noop).cancel()
    loop.call_later(0.375, noop)
    assert loop.wait_ms(500) == 375
    only = PollLoop(select.poll())
    only.call_later(0.125, noop).cancel()
    assert only.wait_ms(500) == 500, "a cancelled timer alone does not shorten the wait"


# ---------------------------------------------------------------------- BlockingDealer.pump

@pytest.fixture
def dealer() -> BlockingDealer:
    """A blocking dealer never started (no kernel, no keepalive thread): its poll
    serves the loop's sockets alone."""
    return BlockingDealer("ipc:///nonexistent/porch-test-kernel.sock", name="test")


def test_pump_dispatches_a_readable_socket_and_runs_the_loops_callbacks(
        dealer: BlockingDealer, pair: tuple[socket.socket, socket.socket]) -> None:
    loop = dealer.loop
    ours, _ = pair
    got: list[str] = []
    seen: list[tuple[bool, bool]] = []

    def readable() -> None:
        got.append(ours.recv(10).decode())
        # In the loop's callbacks: running (a nested pump leaves these sockets alone),
        # and the lock held (a push from another thread waits, porch.process.held).
        held_elsewhere = threading.Thread(target=lambda: seen.append((loop.running, loop.lock.acquire(False))))
        held_elsewhere.start()
        held_elsewhere.join()

    loop.add_reader(ours.fileno(), readable)
    loop.call_soon(got.append, "soon")
    dealer.pump(5000)  # returns at once: the socket is readable
    assert got == ["x", "soon"], "sockets are dispatched before the callbacks run"
    assert seen == [(True, False)]
    assert loop.running is False and loop.lock.acquire(False)
    loop.lock.release()


def test_pump_waits_only_until_the_loops_next_timer(dealer: BlockingDealer) -> None:
    """A bound that does not hang: 60 s asked, a timer due in 10 ms."""
    got: list[str] = []
    dealer.loop.call_later(0.01, got.append, "timer")
    done = threading.Event()

    def pump() -> None:
        dealer.pump(60_000)
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    assert done.wait(10), "pump waited past the timer"
    assert got == ["timer"]


def test_a_pump_from_a_loop_callback_leaves_the_loops_sockets_alone(
        dealer: BlockingDealer, pair: tuple[socket.socket, socket.socket]) -> None:
    """A callback that sends to the kernel pumps (check()): the socket that is being
    served must not be read again inside its own callback."""
    loop = dealer.loop
    ours, _ = pair
    calls: list[str] = []

    def readable() -> None:
        calls.append("reader")
        loop.call_soon(calls.append, "soon")
        dealer.pump(0)  # nested: neither the reader (still readable) nor call_soon run
        calls.append("reader done")

    loop.add_reader(ours.fileno(), readable)
    dealer.pump(0)
    assert calls == ["reader", "reader done", "soon"], "call_soon ran after the reader, by the outer pump"
    ours.recv(1)
    dealer.pump(0)
    assert calls == ["reader", "reader done", "soon"]


def test_pump_without_anything_due_leaves_the_loop_idle(dealer: BlockingDealer) -> None:
    got: list[str] = []
    dealer.loop.call_later(60, got.append, "much later")
    dealer.pump(0)
    assert got == []

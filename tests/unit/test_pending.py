"""The kernel's pending table: who may answer, who is told, and when."""

from porch.kernel.pending import PendingTable, Waiting

A, B, C, D, MALLORY = "conn-a", "conn-b", "conn-c", "conn-d", "conn-mallory"


def test_answer_only_once_and_only_from_the_responder() -> None:
    t = PendingTable()
    assert t.add(A, 1, B, "b:x:y", 1000)
    assert not t.answer(A, 1, MALLORY)
    assert t.answer(A, 1, B)
    assert not t.answer(A, 1, B), "a second (late) response is dropped"


def test_an_answer_is_for_the_requester_that_asked() -> None:
    """Issue 9 item 2: the same id from two requesters are two requests."""
    t = PendingTable()
    assert t.add(A, 7, B, "b:x:y", 1000)
    assert t.add(C, 7, D, "d:x:y", 1000)
    assert not t.answer(A, 7, D), "D answers C's request 7, not A's"
    assert t.answer(C, 7, D)
    assert t.answer(A, 7, B)


def test_a_live_entry_is_never_overwritten() -> None:
    """Issue 9 item 2: nobody re-points a pending request to another responder."""
    t = PendingTable()
    assert t.add(A, 1, B, "b:x:y", 1000)
    assert not t.add(A, 1, MALLORY, "m:x:y", 10)
    assert t.expire(500) == [], "the second add changed no deadline"
    assert not t.answer(A, 1, MALLORY)
    assert t.answer(A, 1, B)
    assert t.add(A, 1, C, "c:x:y", 2000), "once answered, the id may be used again"


def test_deadline_fires_once_and_not_after_an_answer() -> None:
    t = PendingTable()
    t.add(A, 1, B, "b:x:y", 1000)
    t.add(A, 2, B, "b:x:y", 2000)
    assert t.answer(A, 1, B)
    assert t.expire(1500) == []
    assert t.expire(2000) == [Waiting(A, 2, "b:x:y")]
    assert t.expire(99999) == []
    assert len(t) == 0


def test_a_reused_key_expires_at_its_own_deadline() -> None:
    t = PendingTable()
    t.add(A, 1, B, "b:x:y", 1000)
    assert t.answer(A, 1, B)
    t.add(A, 1, B, "b:x:y", 5000)
    assert t.expire(1000) == [], "the first request's heap item is stale"
    assert t.expire(5000) == [Waiting(A, 1, "b:x:y")]


def test_equal_deadlines_of_different_connections_do_not_compare_handles() -> None:
    t = PendingTable()
    t.add(object(), 1, B, "b:x:y", 1000)
    t.add(object(), 1, B, "b:x:y", 1000)
    assert len(t.expire(1000)) == 2


def test_responder_gone_fails_everything_pending_on_it() -> None:
    t = PendingTable()
    t.add(A, 1, B, "b:x:y", 1000)
    t.add(C, 7, B, "b:x:y", 1000)
    t.add(A, 2, D, "d:x:y", 1000)
    assert sorted(t.responder_gone(B)) == [Waiting(A, 1, "b:x:y"), Waiting(C, 7, "b:x:y")]
    assert t.expire(5000) == [Waiting(A, 2, "d:x:y")]


def test_requester_gone_drops_what_it_waited_for() -> None:
    t = PendingTable()
    t.add(A, 1, B, "b:x:y", 1000)
    t.add(A, 2, D, "d:x:y", 1000)
    t.add(C, 1, B, "b:x:y", 1000)
    assert t.requester_gone(A) == 2
    assert not t.answer(A, 1, B)
    assert t.responder_gone(B) == [Waiting(C, 1, "b:x:y")]


def test_heap_stays_bounded_under_load() -> None:
    t = PendingTable()
    t.add("slow", 0, "s", "s:x:y", 10**12)
    for i in range(1, 50_000):
        t.add(A, i, B, "b:x:y", 10**9 + i)
        assert t.answer(A, i, B)
    assert len(t) == 1
    assert len(t._deadlines) < 20_000


def test_expiry_still_works_after_the_heap_was_rebuilt() -> None:
    """Past ~10k answered requests the heap is rebuilt from the live entries; those
    must still expire, once, at their own deadlines."""
    t = PendingTable()
    t.add(C, 1, D, "d:x:y", 10**9 + 5)
    t.add(C, 2, D, "d:x:y", 10**9 + 50_000)
    for i in range(3, 30_000):
        t.add(A, i, B, "b:x:y", 10**9 + i)
        assert t.answer(A, i, B)
    assert len(t._deadlines) < 30_000, "rebuilt at least once"
    assert t.expire(10**9 + 10) == [Waiting(C, 1, "d:x:y")]
    assert t.expire(10**9 + 49_999) == []
    assert t.expire(10**9 + 50_000) == [Waiting(C, 2, "d:x:y")]
    assert len(t) == 0 and t.next_deadline() is None


def test_membership_is_by_requester_and_id() -> None:
    t = PendingTable()
    t.add(A, 1, B, "b:x:y", 1000)
    assert (A, 1) in t
    assert (C, 1) not in t and (A, 2) not in t
    assert t.answer(A, 1, B)
    assert (A, 1) not in t


def test_next_deadline_is_the_earliest() -> None:
    t = PendingTable()
    assert t.next_deadline() is None
    t.add(A, 1, B, "b:x:y", 3000)
    assert t.next_deadline() == 3000
    t.add(A, 2, B, "b:x:y", 1000)
    t.add(A, 3, B, "b:x:y", 2000)
    assert t.next_deadline() == 1000
    assert t.expire(1000) == [Waiting(A, 2, "b:x:y")]
    assert t.next_deadline() == 2000


def test_answered_items_are_dropped_past_twice_the_live_entries_plus_10000() -> None:
    """The heap is lazy (an answer leaves its item) but bounded: it holds at most
    2 x live entries + 10 000 items, and is rebuilt only past that (a rebuild costs
    the live entries, paid for by as many answered requests)."""
    t = PendingTable()
    live = 3000
    for i in range(live):
        t.add(C, i, D, "d:x:y", 10**12)
    rebuilt = 0
    for i in range(1, 20_000):
        before = len(t._deadlines)
        t.add(A, i, B, "b:x:y", 10**9 + i)
        if before + 1 > 2 * len(t) + 10_000:
            assert len(t._deadlines) == len(t), "rebuilt from the live entries"
            rebuilt += 1
        else:
            assert len(t._deadlines) == before + 1, "not rebuilt before it is past the bound"
        assert t.answer(A, i, B)
    assert rebuilt == 1
    assert len(t.expire(10**12)) == live

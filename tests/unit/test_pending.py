from porch.kernel.pending import PendingTable


def test_answer_only_once_and_only_from_the_responder() -> None:
    t = PendingTable()
    t.add(("a", 1), "b", 1000)
    assert not t.answer(("a", 1), "mallory")
    assert t.answer(("a", 1), "b")
    assert not t.answer(("a", 1), "b"), "a second (late) response is dropped"


def test_deadline_fires_once_and_not_after_an_answer() -> None:
    t = PendingTable()
    t.add(("a", 1), "b", 1000)
    t.add(("a", 2), "b", 2000)
    assert t.answer(("a", 1), "b")
    assert t.expire(1500) == []
    assert t.expire(2000) == [(("a", 2), "b")]
    assert t.expire(99999) == []
    assert len(t) == 0


def test_responder_gone_fails_everything_pending_on_it() -> None:
    t = PendingTable()
    t.add(("a", 1), "b", 1000)
    t.add(("c", 7), "b", 1000)
    t.add(("a", 2), "d", 1000)
    assert t.responder_gone("b") == [("a", 1), ("c", 7)]
    assert t.expire(5000) == [(("a", 2), "d")]


def test_heap_stays_bounded_under_load() -> None:
    t = PendingTable()
    t.add(("slow", 0), "s", 10**12)
    for i in range(1, 50_000):
        t.add(("a", i), "b", 10**9 + i)
        assert t.answer(("a", i), "b")
    assert len(t) == 1
    assert len(t._deadlines) < 20_000

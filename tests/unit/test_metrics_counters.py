"""The plain counters every service keeps (porch.node.metrics), issue 13 item 1."""

from __future__ import annotations

import pytest

from porch.node.metrics import COUNTER, GAUGE, HISTOGRAM, OTHER, Family, Histogram, merge, quantile, snapshot


def test_histogram_counts_each_value_in_the_first_bucket_that_holds_it() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 3.0):
        h.observe(v)
    assert h.counts == [2, 2, 1]  # le 0.1 holds 0.1 itself (Prometheus's "le")
    assert h.count == 5
    assert h.sum == pytest.approx(4.65)


def test_quantile_interpolates_inside_the_bucket() -> None:
    bounds = (1.0, 2.0, 4.0)
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None
    assert quantile(0.5, bounds, [10, 0, 0, 0]) == pytest.approx(0.5)
    assert quantile(0.5, bounds, [5, 5, 0, 0]) == pytest.approx(1.0)
    assert quantile(0.75, bounds, [5, 5, 0, 0]) == pytest.approx(1.5)
    assert quantile(0.99, bounds, [0, 0, 1, 0]) == pytest.approx(2.0 + 2.0 * 0.99)
    # Beyond the last bound all that is known is "more than it": the last bound.
    assert quantile(0.99, bounds, [1, 0, 0, 9]) == 4.0
    assert quantile(0.0, bounds, [0, 3, 0, 0]) == pytest.approx(1.0)


def test_counter_family_adds_per_label_set() -> None:
    f = Family("x", "h", COUNTER, ("a",))
    f.inc(("1",))
    f.inc(("1",), 2)
    f.inc(("2",))
    assert f.value(("1",)) == 3
    assert f.value(("2",)) == 1
    assert f.value(("3",)) == 0


def test_a_full_family_counts_new_label_sets_under_other() -> None:
    """Label values come from processes and clients: the series are bounded."""
    f = Family("x", "h", COUNTER, ("a", "b"), max_series=2)
    for i in range(10):
        f.inc((str(i), "x"))
    assert len(f.series) == 3  # two, then the overflow series
    assert f.value((OTHER, OTHER)) == 8
    f.inc(("0", "x"))  # a known one still counts as itself
    assert f.value(("0", "x")) == 2
    h = Family("y", "h", HISTOGRAM, ("a",), max_series=1)
    h.histogram(("1",)).observe(0.1)
    h.histogram(("2",)).observe(0.1)
    h.histogram(("3",)).observe(0.1)
    assert h.value((OTHER,)) == 2
    g = Family("z", "h", GAUGE, ("a",), max_series=1)
    g.set(("1",), 5)
    g.set(("2",), 7)
    assert g.series == {("1",): 5, (OTHER,): 7}


def test_snapshot_carries_every_kind() -> None:
    c = Family("c", "a counter", COUNTER, ("p",))
    c.inc(("x",), 3)
    h = Family("h", "a histogram", HISTOGRAM, ("p",), buckets=(1.0, 2.0))
    h.histogram(("x",)).observe(1.5)
    g = Family("g", "a gauge", GAUGE, collect=lambda: [((), 42.0)])
    out = snapshot([c, h, g])
    fc, fh, fg = out.families
    assert (fc.name, fc.help, fc.type, list(fc.label_names)) == ("c", "a counter", COUNTER, ["p"])
    assert [(list(s.label_values), s.value) for s in fc.series] == [(["x"], 3.0)]
    assert list(fh.buckets) == [1.0, 2.0]
    assert [list(s.bucket_counts) for s in fh.series] == [[0, 1, 0]]
    assert fh.series[0].sum == 1.5
    assert fg.type == GAUGE and fg.series[0].value == 42.0 and not fg.series[0].label_values


def test_quantile_at_a_buckets_whole_count_is_its_upper_bound() -> None:
    """As Prometheus's histogram_quantile: the first bucket whose cumulative count
    reaches the rank holds the quantile, even when empty buckets follow it."""
    bounds = (1.0, 2.0, 4.0)
    assert quantile(0.5, bounds, [5, 0, 5, 0]) == pytest.approx(1.0)
    assert quantile(0.5, bounds, [0, 4, 0, 4]) == pytest.approx(2.0)
    assert quantile(1.0, bounds, [0, 4, 4, 0]) == pytest.approx(4.0)


def test_quantile_past_one_is_the_highest_bound() -> None:
    """A rank past every observation (q > 1, or NaN): all that is known is the highest
    bound, as for the +Inf bucket, never an error."""
    bounds = (1.0, 2.0, 4.0)
    assert quantile(1.5, bounds, [1, 1, 1, 0]) == 4.0
    assert quantile(float("nan"), bounds, [1, 1, 1, 0]) == 4.0
    assert quantile(0.5, (), [3]) is None


def test_a_full_histogram_family_still_observes_known_label_sets_as_themselves() -> None:
    h = Family("y", "h", HISTOGRAM, ("a",), buckets=(1.0,), max_series=1)
    first = h.histogram(("1",))
    first.observe(0.5)
    h.histogram(("2",)).observe(0.5)
    assert h.histogram(("1",)) is first
    h.histogram(("1",)).observe(2.0)
    assert first.counts == [1, 1] and h.value(("1",)) == 2 and h.value((OTHER,)) == 1


def test_merge_adds_histogram_sums() -> None:
    one, two = (Family("h", "a histogram", HISTOGRAM, ("p",), buckets=(1.0,)) for _ in range(2))
    one.histogram(("x",)).observe(0.25)
    two.histogram(("x",)).observe(0.5)
    two.histogram(("x",)).observe(3.0)
    (family,) = merge([snapshot([one]), snapshot([two])]).families
    (series,) = family.series
    assert list(series.bucket_counts) == [2, 1] and series.sum == 3.75


def test_merge_skips_a_family_that_does_not_match_and_goes_on_with_the_next() -> None:
    counter = Family("c", "h", COUNTER, ("a",))
    other_type = Family("c", "h", GAUGE, ("a",))
    later = Family("d", "h", COUNTER, ())
    counter.inc(("1",), 2)
    other_type.set(("1",), 5)
    later.inc((), 3)
    merged = merge([snapshot([counter]), snapshot([other_type, later]), snapshot([later])])
    assert [(f.name, [s.value for s in f.series]) for f in merged.families] == [("c", [2.0]), ("d", [6.0])]

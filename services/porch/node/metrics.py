"""What a service counts, in plain Python numbers, and the snapshot it hands over.

Why plain numbers and not prometheus_client's own metrics in every process
(docs/metrics.md has the measurements): a `Counter.labels(...).inc()` costs 1.3 µs
(1.6 µs in multiprocess mode, which writes an mmap'd file) and a histogram's observe
0.8-2.4 µs, against ~0.3 µs here for a labelled counter and a histogram together; the
kernel routes a pipelined message in ~3.4 µs of CPU. So each service keeps these
families, and hands a snapshot (`porch.v1.Metrics`) to the http-server when it scrapes;
only the http-server imports prometheus_client, to write the exposition format.

Every label value comes from somewhere a process or a client chose (a process id, a
bound path, an HTTP method): each family holds at most `max_series` label sets, and
counts the rest under one series whose every label is OTHER, so a hostile process
or client cannot grow a service's memory or the scrape without bound.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from porch.wire import metrics_pb2

Labels = tuple[str, ...]
OTHER = "_other"
MAX_SERIES = 2000
# Seconds. Local round trips through porch take 0.2-2 ms, apps' answers up to seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)
Type = metrics_pb2.MetricFamily.Type
COUNTER, GAUGE, HISTOGRAM = Type.COUNTER, Type.GAUGE, Type.HISTOGRAM


class Histogram:
    """Observations per bucket (`counts[i]`: at most `bounds[i]`, above the one before;
    the last: above every bound) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


def quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The q-quantile (0..1) of a histogram's observations, interpolated linearly
    inside its bucket (as Prometheus's histogram_quantile); None without observations.
    A quantile in the +Inf bucket is the highest bound: all that is known."""
    total = sum(counts)
    if total <= 0 or not bounds:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i == len(bounds):
                return float(bounds[-1])
            low = 0.0 if i == 0 else float(bounds[i - 1])
            return low + (float(bounds[i]) - low) * max(0.0, rank - seen) / n
        seen += n
    return float(bounds[-1])


class Family:
    """One metric, its series keyed by label values (a tuple, one per label name).

    A counter's or gauge's series are numbers (`inc`, `set`); a histogram's are
    Histograms (`histogram(key).observe(v)`). `collect`, if given, supplies the series
    at snapshot time instead (gauges of what is there now: open sockets, queues)."""

    __slots__ = ("buckets", "collect", "help", "kind", "labels", "max_series", "name", "series")

    def __init__(self, name: str, help: str, kind: int, labels: Sequence[str] = (), *,
                 buckets: Sequence[float] = LATENCY_BUCKETS, max_series: int = MAX_SERIES,
                 collect: Callable[[], Iterable[tuple[Labels, Any]]] | None = None) -> None:
        self.name = name
        self.help = help
        self.kind = kind
        self.labels = tuple(labels)
        self.buckets = tuple(buckets)
        self.max_series = max_series
        self.collect = collect
        self.series: dict[Labels, Any] = {}

    def _key(self, key: Labels) -> Labels:
        """key, or the OTHER series when the family is full."""
        if len(self.series) < self.max_series:
            return key
        return (OTHER,) * len(self.labels)

    def inc(self, key: Labels, amount: float = 1) -> None:
        series = self.series
        value = series.get(key)
        if value is None:
            key = self._key(key)
            series[key] = series.get(key, 0) + amount
        else:
            series[key] = value + amount

    def set(self, key: Labels, value: float) -> None:
        if key not in self.series:
            key = self._key(key)
        self.series[key] = value

    def histogram(self, key: Labels) -> Histogram:
        hist: Histogram | None = self.series.get(key)
        if hist is None:
            key = self._key(key)
            hist = self.series.get(key)
            if hist is None:
                hist = self.series[key] = Histogram(self.buckets)
        return hist

    def value(self, key: Labels) -> float:
        value = self.series.get(key, 0)
        return float(value.count if isinstance(value, Histogram) else value)

    def to_proto(self, out: metrics_pb2.MetricFamily) -> None:
        out.name, out.help, out.type = self.name, self.help, self.kind  # type: ignore[assignment]
        out.label_names.extend(self.labels)
        if self.kind == HISTOGRAM:
            out.buckets.extend(self.buckets)
        items: Iterable[tuple[Labels, Any]] = (self.collect() if self.collect is not None
                                                else list(self.series.items()))
        add = out.series.add
        for key, value in items:
            series = add()
            series.label_values.extend(key)
            if isinstance(value, Histogram):
                series.bucket_counts.extend(value.counts)
                series.sum = value.sum
            else:
                series.value = value


def snapshot(families: Iterable[Family]) -> metrics_pb2.Metrics:
    """Every family's series now, as one porch.v1.Metrics."""
    out = metrics_pb2.Metrics()
    for family in families:
        family.to_proto(out.families.add())
    return out



def merge(snapshots: Iterable[metrics_pb2.Metrics]) -> metrics_pb2.Metrics:
    """One snapshot of several processes' counts of the same things (the http-server's
    workers): series of one family with the same label values are added (a histogram
    bucket by bucket, with its sum). A family is defined by its first appearance; a
    series that cannot be added to it (another type, other labels or buckets) is
    left out."""
    out = metrics_pb2.Metrics()
    found: dict[str, tuple[metrics_pb2.MetricFamily, dict[tuple[str, ...], metrics_pb2.Series]]] = {}
    for snap in snapshots:
        for family in snap.families:
            entry = found.get(family.name)
            if entry is None:
                target = out.families.add()
                target.name, target.help, target.type = family.name, family.help, family.type
                target.label_names.extend(family.label_names)
                target.buckets.extend(family.buckets)
                entry = found[family.name] = (target, {})
            target, series_by_key = entry
            if (target.type != family.type or list(target.label_names) != list(family.label_names)
                    or list(target.buckets) != list(family.buckets)):
                continue
            for series in family.series:
                key = tuple(series.label_values)
                mine = series_by_key.get(key)
                if mine is None:
                    mine = series_by_key[key] = target.series.add()
                    mine.CopyFrom(series)
                elif family.type == HISTOGRAM:
                    if len(mine.bucket_counts) == len(series.bucket_counts):
                        for i, n in enumerate(series.bucket_counts):
                            mine.bucket_counts[i] += n
                        mine.sum += series.sum
                else:
                    mine.value += series.value
    return out

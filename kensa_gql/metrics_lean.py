"""The per-request instruments, kept in plain dicts and handed to Prometheus at scrape time.

prometheus_client's labelled Counter and Histogram take a lock for every increment and check
that the child may be observed; an HTTP request pays that three times (its counter, its
histogram's sum and bucket), ~2 us of a ~30 us REST read. Here a request costs a dict update
and a bisect, and ``collect`` builds, per scrape, the very families the stock instruments
would expose (names, help, labels, buckets, ``_created``): tests/unit/test_metrics_lean.py
scrapes both after the same observations and compares them.

Only in a single process: with ``PROMETHEUS_MULTIPROC_DIR`` the values must go through
prometheus_client's files to be merged across processes, and kensa_gql/metrics.py uses the
stock instruments (as it does with ``KENSA_LEAN_METRICS=false``).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString


class LeanCounter(Collector):
    """A labelled counter: ``inc(values)``; exposed as prometheus_client's Counter is."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name.removesuffix("_total")
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], list[float]] = {}  # labels -> [value, created]

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        entry = self._values.get(labels)
        if entry is None:
            entry = self._values[labels] = [0.0, time.time()]
        entry[0] += amount

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, (value, created) in list(self._values.items()):
            family.add_metric(list(labels), value, created=created)
        yield family


class LeanHistogram(Collector):
    """A labelled histogram: ``observe(values, amount)``; exposed as prometheus_client's Histogram is."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = [float(b) for b in buckets]
        if self.bounds[-1] != math.inf:
            self.bounds.append(math.inf)
        # labels -> [count per bucket..., sum, created]
        self._values: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], amount: float) -> None:
        entry = self._values.get(labels)
        if entry is None:
            entry = self._values[labels] = [0.0] * len(self.bounds) + [0.0, time.time()]
        # The first bucket whose bound is >= amount, as prometheus_client's observe finds it.
        entry[bisect.bisect_left(self.bounds, amount)] += 1
        entry[-2] += amount

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        width = len(self.bounds)
        for labels, entry in list(self._values.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip(self.bounds, entry[:width], strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
            family.add_metric(list(labels), buckets, entry[-2])
            family.samples.append(Sample(self.name + "_created", dict(zip(self.labelnames, labels, strict=True)),
                                         entry[-1]))
        yield family

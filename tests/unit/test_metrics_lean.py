"""The lean per-request instruments (kensa_gql/metrics_lean.py) expose exactly what the stock
prometheus_client instruments would, after the same observations: the same families, labels,
buckets, counts and sums (``_created`` times aside, which record when each series began)."""

from __future__ import annotations

import math
import random
import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from kensa_gql import metrics
from kensa_gql.metrics_lean import LeanCounter, LeanHistogram

_CREATED = re.compile(r"^(\w+_created\{.*\}) \S+$", re.MULTILINE)


def exposed(registry: CollectorRegistry) -> str:
    return _CREATED.sub(r"\1 <time>", generate_latest(registry).decode())


def test_the_lean_instruments_expose_what_the_stock_ones_do() -> None:
    stock, lean = CollectorRegistry(), CollectorRegistry()
    labels = ("route", "method")
    histogram = Histogram("t_seconds", "Time taken", labels, buckets=metrics._BUCKETS, registry=stock)
    counter = Counter("t_requests", "Requests", (*labels, "status"), registry=stock)
    lean_histogram = LeanHistogram("t_seconds", "Time taken", labels, buckets=metrics._BUCKETS)
    lean_counter = LeanCounter("t_requests", "Requests", (*labels, "status"))
    lean.register(lean_histogram)
    lean.register(lean_counter)
    rng = random.Random(7)
    # Values on the bucket bounds themselves too: a bound's bucket counts it (le = "less or equal").
    amounts = [*metrics._BUCKETS, 0.0, 1e-9, 45.0, math.inf, *(rng.expovariate(20) for _ in range(500))]
    for amount in amounts:
        route, method = rng.choice(["/graphql", "/api/v1/video/{uuid}"]), rng.choice(["GET", "POST"])
        status = rng.choice(["200", "404", "429"])
        histogram.labels(route, method).observe(amount)
        lean_histogram.observe((route, method), amount)
        counter.labels(route, method, status).inc(2)
        lean_counter.inc((route, method, status), 2)
    assert exposed(lean) == exposed(stock)
    assert "t_seconds_created" in exposed(lean) and "t_requests_total" in exposed(lean)


def test_the_gateway_uses_the_lean_instruments_unless_told_not_to() -> None:
    # This test process has no PROMETHEUS_MULTIPROC_DIR (tests/e2e/test_metrics_multiprocess.py
    # runs the stock instruments in processes of their own).
    assert metrics.LEAN
    assert isinstance(metrics.HTTP_REQUESTS, LeanCounter) and isinstance(metrics.HTTP_DURATION, LeanHistogram)

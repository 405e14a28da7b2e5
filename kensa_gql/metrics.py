"""Prometheus metrics: the instruments, and the few functions the rest of the code calls.

One module-level set of instruments on prometheus_client's default registry (a process has one
gateway). With ``PROMETHEUS_MULTIPROC_DIR`` set before start-up, prometheus_client keeps each
process's values in files there and ``/metrics`` merges them (api/metrics.py), so several
workers on one host are scraped as one (docs/operations.md). Label values are bounded: route
templates, operation names from a capped set, codes, statuses and vendor names.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from kensa_gql.metrics_lean import LeanCounter, LeanHistogram

# Latency buckets from a cached read (~1 ms) to a slow provider call.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# The instruments every request touches: kept lean (metrics_lean.py) in a single process, unless
# KENSA_LEAN_METRICS=false; several processes share values through prometheus_client's files.
LEAN = not os.environ.get("PROMETHEUS_MULTIPROC_DIR") and os.environ.get("KENSA_LEAN_METRICS", "").lower() not in (
    "false", "0", "no", "off")
_HTTP_REQUESTS = ("kensa_http_requests", "HTTP requests answered, by route template, method and status",
                  ("route", "method", "status"))
_HTTP_DURATION = ("kensa_http_request_duration_seconds", "Time to answer an HTTP request", ("route", "method"))
_GRAPHQL_OPERATIONS = ("kensa_graphql_operations", "GraphQL operations run, by name and type", ("operation", "type"))
HTTP_REQUESTS: Any
HTTP_DURATION: Any
GRAPHQL_OPERATIONS: Any
if LEAN:
    HTTP_REQUESTS = LeanCounter(*_HTTP_REQUESTS)
    HTTP_DURATION = LeanHistogram(*_HTTP_DURATION, buckets=_BUCKETS)
    GRAPHQL_OPERATIONS = LeanCounter(*_GRAPHQL_OPERATIONS)
    for _lean in (HTTP_REQUESTS, HTTP_DURATION, GRAPHQL_OPERATIONS):
        REGISTRY.register(_lean)
else:
    HTTP_REQUESTS = Counter(*_HTTP_REQUESTS)
    HTTP_DURATION = Histogram(*_HTTP_DURATION, buckets=_BUCKETS)
    GRAPHQL_OPERATIONS = Counter(*_GRAPHQL_OPERATIONS)
RATE_LIMITED = Counter("kensa_rate_limited", "Requests and operations refused by a rate limit", ["policy"])
GRAPHQL_ERRORS = Counter("kensa_graphql_errors", "GraphQL errors returned, by extensions.code", ["code"])
WEBSOCKETS_OPEN = Gauge("kensa_websockets_open", "WebSocket connections open", multiprocess_mode="livesum")
SUBSCRIPTIONS_ACTIVE = Gauge("kensa_subscriptions_active", "videoStatus subscriptions being followed",
                             multiprocess_mode="livesum")
SSE_STREAMS_OPEN = Gauge("kensa_sse_streams_open", "Video event streams (server-sent events) open",
                         multiprocess_mode="livesum")
TASK_TRANSITIONS = Counter("kensa_task_transitions", "Video task status changes made by the runner",
                           ["status"])
CLAIM_LAG = Histogram("kensa_task_claim_lag_seconds", "From a task falling due to a runner claiming it",
                      buckets=_BUCKETS)
PROVIDER_CALLS = Counter("kensa_provider_calls", "Calls to video providers by vendor, call and outcome",
                         ["provider", "call", "outcome"])
PROVIDER_DURATION = Histogram("kensa_provider_call_duration_seconds", "Time a provider call took",
                              ["provider", "call"], buckets=_BUCKETS)
CREDITS_FROZEN = Gauge("kensa_credits_frozen", "Credits frozen by videos in flight (read at scrape)",
                       multiprocess_mode="max")
CREDITS_SETTLED = Counter("kensa_credits_settled", "Credits settled: frozen credits of finished videos spent")
CREDITS_RELEASED = Counter("kensa_credits_released", "Credits released: frozen credits of failed videos returned")

WEBHOOK_DELIVERIES = Counter(
    "kensa_webhook_deliveries", "Webhook delivery attempts recorded, by outcome: succeeded, retrying (another "
    "attempt is scheduled), failed (given up), refused (the URL guard refused to send)", ["outcome"])
WEBHOOK_DURATION = Histogram("kensa_webhook_delivery_duration_seconds",
                             "Time a webhook send took, for attempts that were sent", buckets=_BUCKETS)
for _outcome in ("succeeded", "retrying", "failed", "refused"):  # every outcome scraped, at 0 until it happens
    WEBHOOK_DELIVERIES.labels(_outcome)

MAX_OPERATION_NAMES = 200  # distinct names recorded; later new ones count as "other"
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_names: set[str] = set()


def operation_name(name: str | None) -> str:
    """A bounded label for a client-chosen operation name."""
    if not name:
        return "anonymous"
    if name in _names:
        return name
    if len(_names) >= MAX_OPERATION_NAMES or not _NAME.fullmatch(name):
        return "other"
    _names.add(name)
    return name


_operations: dict[tuple[str | None, str], Any] = {}  # (name, type) -> its labels (lean) or child (stock)


def graphql_operation(name: str | None, kind: str) -> None:
    # Looked up once by the raw name: ``labels`` takes a lock and checks every value.
    counted: Any = _operations.get((name, kind))
    if counted is None:
        if len(_operations) > 4 * MAX_OPERATION_NAMES:  # names past the cap all map to "other"
            _operations.clear()
        labels = (operation_name(name), kind)
        counted = labels if LEAN else GRAPHQL_OPERATIONS.labels(*labels)
        _operations[(name, kind)] = counted
    if LEAN:
        GRAPHQL_OPERATIONS.inc(counted)
    else:
        counted.inc()


_timed: dict[tuple[str, str], Any] = {}
_counted: dict[tuple[str, str, int], Any] = {}


def http_request(route: str, method: str, status: int, elapsed: float) -> None:
    """One HTTP response: ``route`` a template and ``method`` one of a fixed set (bounded labels)."""
    if LEAN:
        HTTP_DURATION.observe((route, method), elapsed)
        HTTP_REQUESTS.inc((route, method, str(status)))
        return
    timed = _timed.get((route, method))
    if timed is None:
        timed = _timed[(route, method)] = HTTP_DURATION.labels(route, method)
    timed.observe(elapsed)
    counted = _counted.get((route, method, status))
    if counted is None:
        counted = _counted[(route, method, status)] = HTTP_REQUESTS.labels(route, method, str(status))
    counted.inc()


def graphql_error(code: str) -> None:
    GRAPHQL_ERRORS.labels(code).inc()


def task_transition(status: str) -> None:
    TASK_TRANSITIONS.labels(status).inc()


def credits_settled(amount: int) -> None:
    CREDITS_SETTLED.inc(amount)


def credits_released(amount: int) -> None:
    CREDITS_RELEASED.inc(amount)


def webhook_delivery(outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def claimed(due_at_ms: int, now_ms: int) -> None:
    CLAIM_LAG.observe(max(0.0, (now_ms - due_at_ms) / 1000))


@contextmanager
def provider_call(provider: str, call: str) -> Iterator[None]:
    """Times one provider call and counts it by outcome: ok, unavailable (retryable) or error."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    except Exception as exc:
        if getattr(exc, "retryable", False):
            outcome = "unavailable"
        raise
    finally:
        PROVIDER_DURATION.labels(provider, call).observe(time.perf_counter() - started)
        PROVIDER_CALLS.labels(provider, call, outcome).inc()

"""Prometheus metrics: the instruments, and the few functions the rest of the code calls.

One module-level set of instruments on prometheus_client's default registry (a process has one
gateway). With ``PROMETHEUS_MULTIPROC_DIR`` set before start-up, prometheus_client keeps each
process's values in files there and ``/metrics`` merges them (api/metrics.py), so several
workers on one host are scraped as one (docs/operations.md). Label values are bounded: route
templates, operation names from a capped set, codes, statuses and vendor names.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# Latency buckets from a cached read (~1 ms) to a slow provider call.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter("kensa_http_requests", "HTTP requests answered, by route template, method and status",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram("kensa_http_request_duration_seconds", "Time to answer an HTTP request",
                          ["route", "method"], buckets=_BUCKETS)
RATE_LIMITED = Counter("kensa_rate_limited", "Requests and operations refused by a rate limit", ["policy"])
GRAPHQL_OPERATIONS = Counter("kensa_graphql_operations", "GraphQL operations run, by name and type",
                             ["operation", "type"])
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


_operations: dict[tuple[str | None, str], Any] = {}  # (name, type) -> its counter's child


def graphql_operation(name: str | None, kind: str) -> None:
    # The child by the raw name, looked up once: ``labels`` takes a lock and checks every value.
    counted = _operations.get((name, kind))
    if counted is None:
        if len(_operations) > 4 * MAX_OPERATION_NAMES:  # names past the cap all map to "other"
            _operations.clear()
        counted = _operations[(name, kind)] = GRAPHQL_OPERATIONS.labels(operation_name(name), kind)
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

"""OpenTelemetry traces, off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``KENSA_OTEL=console``) is set.

When on: a span per HTTP request (the ASGI instrumentation, outermost), per GraphQL operation
(Strawberry's OpenTelemetry extension; the fast path opens the same span itself), per database
transaction (adapters/db/uow.py), per provider call (the httpx instrumentation) and per task run
(runner.py). A generate request stores its ``traceparent`` with the task, so the worker's run of
it, in whichever process, continues the request's trace. Log lines carry ``trace_id`` and
``span_id``; request spans carry ``kensa.request_id``.

The OpenTelemetry packages are the ``otel`` extra (``pip install 'kensa-gql[otel]'``); when
tracing is off nothing of them is imported and every hook here costs one attribute read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from kensa_gql import logs

enabled = False
_provider: Any = None


class TracingUnavailable(Exception):
    """Tracing was asked for but the OpenTelemetry packages are not installed."""


def wanted(otel_setting: str) -> str | None:
    """What the environment asks for: "console", "otlp", or None (off)."""
    if otel_setting == "off":
        return None
    if otel_setting == "console":
        return "console"
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def setup(otel_setting: str) -> None:
    """Turn tracing on if the environment asks for it (once per process)."""
    if enabled:
        return
    mode = wanted(otel_setting)
    if mode is None:
        return
    try:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise TracingUnavailable("tracing needs the OpenTelemetry packages: pip install 'kensa-gql[otel]'") from None
    if mode == "console":
        exporter: Any = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout: the standard OTEL_* variables
    enable(BatchSpanProcessor(exporter))


def enable(processor: Any) -> None:
    """Trace into ``processor`` (a SpanProcessor); tests pass a SimpleSpanProcessor(InMemorySpanExporter())."""
    global enabled, _provider
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    disable()
    _provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                        "kensa-gql")}))
    _provider.add_span_processor(processor)
    HTTPXClientInstrumentor().instrument(tracer_provider=_provider)
    logs.current_trace = _current_ids
    enabled = True


def disable() -> None:
    global enabled, _provider
    if _provider is not None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().uninstrument()
        _provider.shutdown()
    logs.current_trace = None
    _provider = None
    enabled = False


def provider() -> Any:
    return _provider


def _current_ids() -> tuple[str, str] | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def asgi_middleware(app: Any) -> Any:
    """The ASGI app wrapped in the OpenTelemetry server span (only called when enabled)."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(app, tracer_provider=_provider, exclude_spans=["receive", "send"])


def graphql_extension() -> Any:
    """Strawberry's OpenTelemetry extension bound to our provider (only called when enabled)."""
    from strawberry.extensions.tracing import OpenTelemetryExtension

    class Extension(OpenTelemetryExtension):
        def __init__(self, *, execution_context: Any = None) -> None:
            super().__init__(execution_context=execution_context, tracer_provider=_provider)

    return Extension


def note_request(request_id: str) -> None:
    """Put the request id on the current (HTTP server) span."""
    if enabled:
        from opentelemetry import trace

        trace.get_current_span().set_attribute("kensa.request_id", request_id)


def traceparent() -> str | None:
    """The current trace as a W3C ``traceparent`` value, to carry to another process; None when off."""
    if not enabled:
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def span(name: str, *, parent: str | None = None, **attributes: Any) -> Iterator[None]:
    """A span around the block, current inside it; under ``parent`` (a traceparent) if given."""
    if not enabled:
        yield
        return
    from opentelemetry.propagate import extract

    context = extract({"traceparent": parent}) if parent else None
    tracer = _provider.get_tracer("kensa_gql")
    with tracer.start_as_current_span(name, context=context,
                                      attributes={k: v for k, v in attributes.items() if v is not None}):
        yield


class Scope:
    """A span opened and closed by hand, for async context managers (the unit of work)."""

    __slots__ = ("_span", "_token")

    def __init__(self, name: str, **attributes: Any) -> None:
        from opentelemetry import context, trace

        self._span = _provider.get_tracer("kensa_gql").start_span(name, attributes=attributes)
        self._token = context.attach(trace.set_span_in_context(self._span))

    def end(self, error: BaseException | None = None) -> None:
        from opentelemetry import context, trace

        if error is not None:
            self._span.record_exception(error)
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
        try:
            context.detach(self._token)
        finally:
            self._span.end()

"""OpenTelemetry: one trace from a generate request through the task run that makes the video."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kensa_gql import logs, tracing
from tests.conftest import Serve

GENERATE = ("mutation Make($input: GenerateVideoInput!) { generateVideo(input: $input) { uuid status } }")
LOOK = "query Look($uuid: ID!) { video(uuid: $uuid) { status } }"
INPUT = {"prompt": "a kite over dunes", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.enable(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.disable()


def test_tracing_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.wanted("") is None and tracing.wanted("console") == "console"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert tracing.wanted("") == "otlp" and tracing.wanted("off") is None


async def test_a_generate_request_and_its_task_run_share_one_trace(
        spans: InMemorySpanExporter, serve: Serve, make_user: Any) -> None:
    # given a traced gateway whose log lines go to a buffer as JSON
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)
    try:
        server = serve()
        user = await make_user(credits=10)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            # when a video is generated over GraphQL and made by the runner
            made = await client.post("/graphql", headers=user.headers, json={
                "query": GENERATE, "variables": {"input": INPUT}, "operationName": "Make"})
            uuid = made.json()["data"]["generateVideo"]["uuid"]
            for _ in range(200):
                video = (await client.get(f"/api/v1/video/{uuid}", headers=user.headers)).json()["data"]
                if video["status"] == "COMPLETED":
                    break
                await asyncio.sleep(0.05)
            assert video["status"] == "COMPLETED"
            # and the same query is asked three times (Strawberry answers, then the fast path's plan)
            for _ in range(3):
                looked = await client.post("/graphql", headers=user.headers, json={
                    "query": LOOK, "variables": {"uuid": uuid}, "operationName": "Look"})
                assert looked.json()["data"]["video"]["status"] == "COMPLETED"
            # and a provider-style call is made with httpx inside a span
            with tracing.span("outbound"):
                await client.get("/healthz")
        server.stop()
        logs.flush()
    finally:
        logs.flush()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    finished = spans.get_finished_spans()

    # then the request's server span, its GraphQL operation, its transaction and the task run
    # (with its own transactions) are one trace
    request_id = made.headers["x-request-id"]
    [server_span] = [s for s in finished if s.attributes and s.attributes.get("kensa.request_id") == request_id]
    trace_id = server_span.context.trace_id
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    names = [s.name for s in in_trace]
    assert any(name.startswith("GraphQL") and "Make" in name for name in names), names
    [run] = [s for s in in_trace if s.name == "task run"]
    assert run.attributes is not None and run.attributes["kensa.vendor"] == "local"
    assert names.count("db.transaction") >= 3, names  # the generate's write, the runner's writes
    assert any(s.name == "db.transaction" and s.parent is not None and s.parent.span_id == run.context.span_id
               for s in in_trace)
    # and each query had its one operation span, whichever path answered it
    assert [s.name for s in finished].count("GraphQL Query: Look") == 3
    # and an httpx call made inside a span is a child of it
    [outbound] = [s for s in finished if s.name == "outbound"]
    assert any(s.parent is not None and s.parent.span_id == outbound.context.span_id and s.name.startswith("GET")
               for s in finished if s.context.trace_id == outbound.context.trace_id)
    # and the request's log lines carry its trace id
    written = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in written if line.get("request_id") == request_id and line["logger"] == "kensa_gql.access"]
    assert access and access[0]["trace_id"] == f"{trace_id:032x}"
    life = [line for line in written if line.get("video_uuid") == uuid]
    assert life and all(line.get("trace_id") == f"{trace_id:032x}" for line in life), life

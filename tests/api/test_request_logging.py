from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from kensa_gql.api.middleware import RequestContext
from kensa_gql.logs import JsonFormatter


async def exploding_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("secret database detail")


async def test_an_unexpected_error_is_a_500_envelope_logged_once_with_its_request_id(
        caplog: pytest.LogCaptureFixture) -> None:
    transport = httpx.ASGITransport(app=RequestContext(exploding_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with caplog.at_level(logging.INFO):
            r = await client.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"success": False, "error": {"code": "INTERNAL_SERVER_ERROR",
                                                    "message": "internal server error"}}
    assert "secret" not in r.text
    request_id = r.headers["x-request-id"]
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].request_id == request_id and errors[0].exc_info  # type: ignore[attr-defined]


async def test_each_request_logs_one_line_without_the_key_or_the_prompt(
        client: httpx.AsyncClient, make_user: Any, caplog: pytest.LogCaptureFixture) -> None:
    user = await make_user(credits=10)
    prompt = "a very private prompt about my secret project"
    with caplog.at_level(logging.INFO):
        r = await client.post("/api/v1/video/generate", headers=user.headers,
                              json={"prompt": prompt, "model": "sora-2", "duration": 4, "aspectRatio": "16:9"})
    access = [rec for rec in caplog.records if rec.name == "kensa_gql.access"]
    assert len(access) == 1
    line = JsonFormatter().format(access[0])
    data = json.loads(line)
    assert data["method"] == "POST" and data["path"] == "/api/v1/video/generate" and data["status"] == 200
    assert data["request_id"] == r.headers["x-request-id"] and data["duration_ms"] >= 0
    everything = "\n".join(JsonFormatter().format(rec) for rec in caplog.records)
    assert user.key not in everything and prompt not in everything

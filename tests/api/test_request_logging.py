from __future__ import annotations

import json
import logging
import sys
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from kensa_gql.api.middleware import RequestContext
from kensa_gql.logs import JsonFormatter, TextFormatter


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


FORGED = "2026-12-03 09:00:00,000 INFO kensa_gql.access: GET /admin 200 0.1ms"


async def test_a_path_with_a_newline_cannot_forge_a_log_line_in_either_format(
        client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    # %0a is decoded into the path the access log records; %1b would start a terminal escape
    with caplog.at_level(logging.INFO):
        r = await client.get("/healthz%0a" + FORGED.replace(" ", "%20") + "%0d%1b[2J%c2%85%e2%80%a8")
    assert r.status_code == 404
    access = [rec for rec in caplog.records if rec.name == "kensa_gql.access"]
    assert len(access) == 1 and "\n" in access[0].path  # type: ignore[attr-defined]
    text = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(access[0])
    as_json = JsonFormatter().format(access[0])
    assert text.splitlines() == [text] and as_json.splitlines() == [as_json] and text.isprintable()
    data = json.loads(as_json)
    for value in (text, data["message"], data["path"]):
        assert value.isprintable(), value
        assert "/healthz\\n2026-12-03 09:00:00,000 INFO" in value and "\\r\\x1b[2J\\x85\\u2028" in value


@pytest.mark.parametrize(("value", "logged"), [
    ("plain text, accents é and emoji 🎬", "plain text, accents é and emoji 🎬"),
    ("tab\there", "tab\\there"), ("nul\x00", "nul\\x00"), ("del\x7f", "del\\x7f"), ("nel\x85", "nel\\x85"),
    ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"), ("rlo\u202e", "rlo\\u202e"), ("lone \ud800", "lone \\ud800"),
])
def test_control_characters_in_any_logged_value_are_escaped(value: str, logged: str) -> None:
    record = logging.LogRecord("kensa_gql.x", logging.WARNING, __file__, 1, "got %s", (value,), None)
    record.path = value
    assert TextFormatter("%(message)s").format(record) == f"got {logged}"
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == f"got {logged}" and data["path"] == logged


def test_a_traceback_keeps_its_lines_but_escapes_the_rest() -> None:
    try:
        raise ValueError("bad \x1b[31m value")
    except ValueError:
        record = logging.LogRecord("kensa_gql.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    for line in TextFormatter("%(message)s").format(record).splitlines():
        assert line.isprintable()
    assert "bad \\x1b[31m value" in json.loads(JsonFormatter().format(record))["traceback"]


def test_a_newline_in_an_exception_message_cannot_forge_a_line_in_the_text_format() -> None:
    forged = "2026-12-03 10:00:00,000 INFO kensa_gql.access: GET /admin 200"
    try:
        raise ValueError(f"bad uuid x\n{forged}")
    except ValueError:
        record = logging.LogRecord("kensa_gql.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)
    first, *rest = text.splitlines()
    assert " ERROR kensa_gql.x: failed" in first
    assert rest and all(line.startswith("  ") for line in rest), text  # none at the margin, as a record is
    assert any(line.strip() == forged for line in rest)  # still there to read, as part of the traceback

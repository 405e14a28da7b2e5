"""The JSON log as an operator reads it: request fields on every line, a video's life at INFO."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kensa_gql import logs
from tests.conftest import Serve

GENERATE = {"prompt": "lighthouse in fog", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
ME = "query Balance { me { credits { available } } }"
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The process's log configured as `serve` does it (JSON), written to a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)
    try:
        yield stream
    finally:
        logs.flush()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    logs.flush()  # every record logged so far, written
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_generation_logs_its_requests_and_each_step_of_its_life(
        json_log: io.StringIO, serve: Serve, make_user: Any) -> None:
    # given a gateway logging JSON, and a user
    server = serve()
    user = await make_user(credits=10)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        # when the user generates a video, asks for it until it is done, and queries GraphQL
        created = await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)
        uuid = created.json()["data"]["uuid"]
        for _ in range(200):
            video = (await client.get(f"/api/v1/video/{uuid}", headers=user.headers)).json()["data"]
            if video["status"] == "COMPLETED":
                break
            await asyncio.sleep(0.05)
        assert video["status"] == "COMPLETED"
        graphql = await client.post("/graphql", json={"query": ME, "operationName": "Balance"},
                                    headers=user.headers)
        assert graphql.status_code == 200
    server.stop()
    written = lines(json_log)

    # then every line has an RFC 3339 UTC time with milliseconds, and the key appears nowhere
    assert all(RFC3339_MS.match(line["time"]) for line in written), written[:3]
    assert user.key not in json_log.getvalue()
    access = [line for line in written if line["logger"] == "kensa_gql.access"]
    by_id = {line["request_id"]: line for line in access}
    generate = by_id[created.headers["x-request-id"]]
    assert generate["route"] == "/api/v1/video/generate" and generate["status"] == 200
    assert generate["user_id"] == user.user_id and generate["duration_ms"] >= 0
    reads = [line for line in access if line["path"] == f"/api/v1/video/{uuid}"]
    assert reads and all(line["route"] == "/api/v1/video/{video_id}" and line["user_id"] == user.user_id
                         for line in reads)
    query = by_id[graphql.headers["x-request-id"]]
    assert query["route"] == "/graphql" and query["operation"] == "Balance" and query["user_id"] == user.user_id

    # and the video's life is told at INFO, each step with its uuid and vendor, in order
    life = [line for line in written if line.get("video_uuid") == uuid]
    assert all(line["level"] == "INFO" and line["vendor"] == "local" for line in life), life
    steps = [line["message"] for line in life]
    expected = ["claimed video", "submitted video", "PENDING -> GENERATING", "GENERATING -> UPLOADING",
                "copied the result", "UPLOADING -> COMPLETED (settled 1 credits)"]
    found = [next((i for i, step in enumerate(steps) if part in step), -1) for part in expected]
    assert -1 not in found and found == sorted(found), steps
    settled = next(line for line in life if line.get("ledger") == "settled")
    assert settled["credits"] == 1 and settled["total_ms"] >= 0
    assert any(line["message"].startswith("runner ") and "stopped" in line["message"] for line in written)


def test_lines_logged_while_a_request_is_handled_carry_its_fields(json_log: io.StringIO) -> None:
    fields = logs.begin_request("req-12345678")
    logs.note(user_id=7, operation="Balance")
    logging.getLogger("kensa_gql.x").warning("odd\nthing", extra={"video_uuid": "u-1"})
    fields.clear()
    [line] = lines(json_log)
    assert line["message"] == "odd\\nthing" and line["level"] == "WARNING" and line["video_uuid"] == "u-1"
    assert line["request_id"] == "req-12345678" and line["user_id"] == 7 and line["operation"] == "Balance"

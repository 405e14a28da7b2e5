"""The JSON log as an operator reads it: request fields on every line, a video's life at INFO."""

from __future__ import annotations

import asyncio
import contextlib
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
RFC3339_IN_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@contextlib.contextmanager
def logging_to(fmt: str = "json", *, direct: bool = True) -> Iterator[io.StringIO]:
    """The process's log configured as `serve` does it, written to a buffer. Entered in a test's
    body, not in a fixture: pytest adds its own handlers to the root as the body starts, and with a
    handler of someone else's there, logs.info() takes the stock path (a LogRecord)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure(fmt, "INFO", stream=stream, direct=direct)
    try:
        yield stream
    finally:
        logs.flush()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


@contextlib.contextmanager
def records_made() -> Iterator[list[str]]:
    """The logger names of the LogRecords made meanwhile."""
    factory = logging.getLogRecordFactory()
    made: list[str] = []

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        made.append(record.name)
        return record

    logging.setLogRecordFactory(counting)
    try:
        yield made
    finally:
        logging.setLogRecordFactory(factory)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    logs.flush()  # every record logged so far, written
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_generation_logs_its_requests_and_each_step_of_its_life(serve: Serve, make_user: Any) -> None:
    # given a gateway logging JSON, and a user
    with logging_to("json") as json_log:
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


def test_lines_logged_while_a_request_is_handled_carry_its_fields() -> None:
    with logging_to("json") as json_log:
        fields = logs.begin_request("req-12345678")
        logs.note(user_id=7, operation="Balance")
        logging.getLogger("kensa_gql.x").warning("odd\nthing", extra={"video_uuid": "u-1"})
        fields.clear()
        [line] = lines(json_log)
    assert line["message"] == "odd\\nthing" and line["level"] == "WARNING" and line["video_uuid"] == "u-1"
    assert line["request_id"] == "req-12345678" and line["user_id"] == 7 and line["operation"] == "Balance"


ACCESS = logging.getLogger("kensa_gql.access")


def log_some_lines() -> None:
    """What a request logs: a line of its own, the access line (through logs.info), and others through it."""
    fields = logs.begin_request("req-87654321")
    logs.note(user_id=7, operation="Look")
    logging.getLogger("kensa_gql.x").warning("before %s", "it")
    logs.info(ACCESS, "%s %s %s %.1fms", "GET", "/api/v1/video/a\nb\u202e", 200, 1.25,
              extra={**fields, "method": "GET", "path": "/api/v1/video/a\nb\u202e", "route": "/api/v1/video/{video_id}",
                     "status": 200, "duration_ms": 1.2, "_hidden": 1})
    logs.info(ACCESS, "no extra, %(what)s", {"what": "a mapping"})
    logs.info(ACCESS, "100% plain")
    logs.info(ACCESS, "some extra", extra={"video_uuid": "u-1", "user_id": 99})  # the request's fields follow
    fields.clear()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_the_direct_access_line_is_the_line_its_record_would_give(fmt: str) -> None:
    written = {}
    for direct in (True, False):
        with records_made() as made, logging_to(fmt, direct=direct) as stream:
            log_some_lines()
            logs.flush()
        written[direct] = RFC3339_IN_LINE.sub("<time>", stream.getvalue())
        # direct: no record made for the access lines, only for the line of their own
        assert made == ["kensa_gql.x"] if direct else made.count("kensa_gql.access") == 4
    assert written[True] == written[False] and len(written[True].splitlines()) == 5, written


def test_a_line_another_handler_listens_for_goes_through_a_record() -> None:
    with logging_to("json") as json_log:
        # given a handler of someone else's on the root (as pytest's caplog puts one)
        seen: list[logging.LogRecord] = []

        class Listener(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record)

        listener = Listener()
        logging.getLogger().addHandler(listener)
        # when the access line is logged, then that handler has its record, and the line is written too
        logs.info(ACCESS, "GET %s", "/x", extra={"status": 200})
        logging.getLogger().removeHandler(listener)
        [line] = lines(json_log)
    assert [(r.getMessage(), r.status) for r in seen] == [("GET /x", 200)]  # type: ignore[attr-defined]
    assert line["message"] == "GET /x" and line["status"] == 200


def test_a_line_below_the_handlers_level_is_not_written() -> None:
    with logging_to("json") as json_log:
        logging.getLogger().handlers[0].setLevel(logging.WARNING)
        logs.info(ACCESS, "GET %s", "/quiet")
        logging.getLogger("kensa_gql.x").warning("loud")
        assert [line["message"] for line in lines(json_log)] == ["loud"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_lines_are_written_in_the_order_they_were_logged_and_none_is_lost(fmt: str) -> None:
    other = logging.getLogger("kensa_gql.x")
    with records_made() as made, logging_to(fmt) as stream:
        for i in range(3000):
            if i % 3:
                logs.info(ACCESS, "line %d", i)
            else:
                other.warning("line %d", i)
        logs.flush()  # as at exit
    assert len(made) == 1000  # the access lines went on the queue without records, among the others
    messages = [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()] if fmt == "text" else \
        [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == [f"line {i}" for i in range(3000)]


def test_a_time_is_written_in_rfc3339_utc_with_milliseconds_whatever_was_written_before() -> None:
    times = [1764763200.1234, 1764763200.1239, 1764763201.1234, 1764763200.1234, 0.0, 1.9999]
    assert [logs.rfc3339(t) for t in times] == [
        "2025-12-03T12:00:00.123Z", "2025-12-03T12:00:00.123Z", "2025-12-03T12:00:01.123Z",
        "2025-12-03T12:00:00.123Z", "1970-01-01T00:00:00.000Z", "1970-01-01T00:00:01.999Z"]

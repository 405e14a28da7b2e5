"""GraphQL over HTTP against a live server: what a frontend reads and writes, and the errors it gets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kensa_gql.adapters.db.database import Database
from tests.api.graphql.wire import GENERATE, REQUEST, VIDEO_FIELDS, codes, generate, post
from tests.conftest import LiveServer
from tests.support import wait_for_status

ME = "query { me { id email credits { available frozen used total } } }"
MODELS = "query { models { id name provider modes maxDuration durations resolutions aspectRatios enabled } }"
VIDEOS = f"""
query Videos($page: Int!, $size: Int!) {{
  videos(page: $page, pageSize: $size) {{ total page pageSize videos {{ {VIDEO_FIELDS} }} }}
}}
"""
VIDEO = f"query Video($uuid: ID!) {{ video(uuid: $uuid) {{ {VIDEO_FIELDS} }} }}"
TASK = "query Task($uuid: ID!) { videoTask(uuid: $uuid) { uuid status progress } }"
HISTORY = """
query History($page: Int!, $size: Int!) {
  creditHistory(page: $page, pageSize: $size) {
    total page pageSize transactions { id transNo transType credits balanceAfter videoUuid createdAt }
  }
}
"""
DELETE = "mutation Delete($uuid: ID!) { deleteVideo(uuid: $uuid) { uuid deleted } }"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


async def wait_for_task(client: httpx.AsyncClient, key: str, uuid: str, statuses: set[str]) -> dict[str, Any]:
    for _ in range(600):
        task: dict[str, Any] = (await post(client, TASK, {"uuid": uuid}, key=key))["data"]["videoTask"]
        if task["status"] in statuses:
            return task
        await asyncio.sleep(0.05)
    raise AssertionError(f"video {uuid} never reached {statuses}")


async def test_me_shows_the_caller_and_their_balance(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=50)
    body = await post(client, ME, key=user.key)
    assert body == {"data": {"me": {"id": str(user.user_id), "email": user.email,
                                    "credits": {"available": 50, "frozen": 0, "used": 0, "total": 50}}}}


async def test_models_match_the_rest_catalogue_and_need_no_key(client: httpx.AsyncClient) -> None:
    body = await post(client, MODELS)
    rest = (await client.get("/api/v1/config/models")).json()["data"]["models"]
    graphql = body["data"]["models"]
    assert [{k: m[k] for k in rest[0]} for m in graphql] == rest
    assert all(m["durations"] and max(m["durations"]) == m["maxDuration"] for m in graphql)


async def test_queries_work_over_get_too(client: httpx.AsyncClient) -> None:
    r = await client.get("/graphql", params={"query": "{ models { id } }"})
    assert r.status_code == 200 and r.json()["data"]["models"]


async def test_generate_then_follow_the_balance_from_frozen_to_used(client: httpx.AsyncClient,
                                                                    make_user: Any) -> None:
    user = await make_user(credits=100)
    body = await post(client, GENERATE, {"input": REQUEST}, key=user.key)
    created = body["data"]["generateVideo"]
    assert created["status"] == "PENDING" and created["id"] == created["uuid"]
    price = created["creditsUsed"]
    assert price > 0

    credits = (await post(client, ME, key=user.key))["data"]["me"]["credits"]
    assert credits == {"available": 100 - price, "frozen": price, "used": 0, "total": 100}

    task = await wait_for_task(client, user.key, created["uuid"], {"COMPLETED", "FAILED"})
    assert task == {"uuid": created["uuid"], "status": "COMPLETED", "progress": 100}
    credits = (await post(client, ME, key=user.key))["data"]["me"]["credits"]
    assert credits == {"available": 100 - price, "frozen": 0, "used": price, "total": 100}

    history = (await post(client, HISTORY, {"page": 1, "size": 10}, key=user.key))["data"]["creditHistory"]
    kinds = [(t["transType"], t["credits"], t["videoUuid"]) for t in history["transactions"]]
    assert kinds[:2] == [("VIDEO_SETTLE", 0, created["uuid"]), ("VIDEO_CONSUME", -price, created["uuid"])]
    assert history["total"] == 3 and history["page"] == 1 and history["pageSize"] == 10


async def test_graphql_and_rest_return_identical_values_for_one_video(client: httpx.AsyncClient,
                                                                      make_user: Any) -> None:
    user = await make_user(credits=100)
    uuid = await generate(client, user.key)
    rest = await wait_for_status(client, user, uuid, {"COMPLETED"})
    video = (await post(client, VIDEO, {"uuid": uuid}, key=user.key))["data"]["video"]
    assert {key: video[key] for key in rest} == rest
    assert video["id"] == uuid and video["progress"] == 100 and video["errorMessage"] is None

    rest_list = (await client.get("/api/v1/video/list", headers=user.headers)).json()["data"]
    page = (await post(client, VIDEOS, {"page": 1, "size": 20}, key=user.key))["data"]["videos"]
    summary_keys = rest_list["videos"][0].keys()
    assert [{key: v[key] for key in summary_keys} for v in page["videos"]] == rest_list["videos"]
    assert (page["total"], page["page"], page["pageSize"]) == (rest_list["total"], 1, 20)

    rest_task = (await client.get("/api/v1/video/task", params={"uuid": uuid},
                                  headers=user.headers)).json()
    assert (await post(client, TASK, {"uuid": uuid}, key=user.key))["data"]["videoTask"] == rest_task["data"]

    rest_history = (await client.get("/api/v1/credit/history", headers=user.headers)).json()["data"]
    history = (await post(client, HISTORY, {"page": 1, "size": 20}, key=user.key))["data"]["creditHistory"]
    assert history == rest_history


async def test_videos_page_and_delete(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=100)
    made = [await generate(client, user.key) for _ in range(3)]
    first = (await post(client, VIDEOS, {"page": 1, "size": 2}, key=user.key))["data"]["videos"]
    second = (await post(client, VIDEOS, {"page": 2, "size": 2}, key=user.key))["data"]["videos"]
    assert first["total"] == 3
    assert [v["uuid"] for v in first["videos"] + second["videos"]] == list(reversed(made))

    body = await post(client, DELETE, {"uuid": made[0]}, key=user.key)
    assert body == {"data": {"deleteVideo": {"uuid": made[0], "deleted": True}}}
    assert (await post(client, VIDEO, {"uuid": made[0]}, key=user.key))["data"]["video"] is None
    assert (await post(client, VIDEOS, {"page": 1, "size": 20}, key=user.key))["data"]["videos"]["total"] == 2
    again = await post(client, DELETE, {"uuid": made[0]}, key=user.key)
    assert again["data"] is None and codes(again) == ["NOT_FOUND"]


async def test_another_users_video_is_invisible(client: httpx.AsyncClient, make_user: Any) -> None:
    owner, other = await make_user(credits=100), await make_user(credits=100)
    uuid = await generate(client, owner.key)
    assert (await post(client, VIDEO, {"uuid": uuid}, key=other.key))["data"]["video"] is None
    assert (await post(client, TASK, {"uuid": uuid}, key=other.key))["data"]["videoTask"] is None
    assert codes(await post(client, DELETE, {"uuid": uuid}, key=other.key)) == ["NOT_FOUND"]
    for unknown in (UNKNOWN, "not-a-uuid"):
        assert (await post(client, VIDEO, {"uuid": unknown}, key=owner.key))["data"]["video"] is None
    assert (await post(client, VIDEO, {"uuid": uuid}, key=owner.key))["data"]["video"]["uuid"] == uuid


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer kg_" + "x" * 40},
                                     {"Authorization": "Basic abc"}])
async def test_a_missing_or_bad_key_is_unauthenticated(client: httpx.AsyncClient,
                                                        headers: dict[str, str]) -> None:
    for query in (ME, VIDEOS.replace("$page: Int!, $size: Int!", "$page: Int = 1, $size: Int = 20")):
        r = await client.post("/graphql", json={"query": query}, headers=headers)
        assert r.status_code == 200 and codes(r.json()) == ["UNAUTHENTICATED"] and r.json()["data"] is None


@pytest.mark.parametrize(("changes", "field"), [
    ({"duration": 3}, "duration"),
    ({"model": "no-such-model"}, "model"),
    ({"prompt": "   "}, "prompt"),
    ({"aspectRatio": "4:3"}, "aspectRatio"),
    ({"quality": "8k"}, "quality"),
    ({"startImageUrl": "http://127.0.0.1/cat.png"}, "startImageUrl"),
    ({"idempotencyKey": ""}, "idempotencyKey"),
])
async def test_bad_input_is_bad_user_input_naming_the_field(client: httpx.AsyncClient, make_user: Any,
                                                            changes: dict[str, Any], field: str) -> None:
    user = await make_user(credits=100)
    body = await post(client, GENERATE, {"input": {**REQUEST, **changes}}, key=user.key)
    assert body["data"] is None and codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == field
    credits = (await post(client, ME, key=user.key))["data"]["me"]["credits"]
    assert credits["available"] == 100 and credits["frozen"] == 0


@pytest.mark.parametrize(("page", "size"), [(0, 20), (1, 0), (1, 101)])
async def test_out_of_range_pages_are_bad_user_input(client: httpx.AsyncClient, make_user: Any,
                                                     page: int, size: int) -> None:
    user = await make_user()
    for query in (VIDEOS, HISTORY):
        body = await post(client, query, {"page": page, "size": size}, key=user.key)
        assert codes(body) == ["BAD_USER_INPUT"]


async def test_a_null_for_an_argument_with_a_default_is_bad_user_input(
        client: httpx.AsyncClient, make_user: Any, caplog: pytest.LogCaptureFixture) -> None:
    # Validation lets a nullable variable into `pageSize: Int!` because the argument has a default;
    # graphql-core then refuses the null while executing. The caller's input, not our fault.
    user = await make_user()
    caplog.set_level(logging.ERROR)
    nullable = "query Videos($size: Int) { videos(pageSize: $size) { pageSize } }"
    for _ in range(2):  # the first POST takes Strawberry's path, the next the compiled one
        body = await post(client, nullable, {"size": None}, key=user.key)
        assert body["data"] is None and codes(body) == ["BAD_USER_INPUT"]
        assert "pageSize" in body["errors"][0]["message"]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


async def test_insufficient_credits(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=0)
    body = await post(client, GENERATE, {"input": REQUEST}, key=user.key)
    assert codes(body) == ["INSUFFICIENT_CREDITS"]
    assert "required" in body["errors"][0]["message"]


async def test_idempotency_key_is_shared_with_rest(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=100)
    keyed = {**REQUEST, "idempotencyKey": "order-42"}
    first = (await post(client, GENERATE, {"input": keyed}, key=user.key))["data"]["generateVideo"]
    again = (await post(client, GENERATE, {"input": keyed}, key=user.key))["data"]["generateVideo"]
    assert again["uuid"] == first["uuid"]
    # The same request through REST with the same key is the same request.
    r = await client.post("/api/v1/video/generate", json=REQUEST,
                          headers={**user.headers, "Idempotency-Key": "order-42"})
    assert r.json()["data"]["uuid"] == first["uuid"]
    changed = await post(client, GENERATE, {"input": {**keyed, "prompt": "something else"}}, key=user.key)
    assert codes(changed) == ["IDEMPOTENCY_KEY_REUSED"]
    total = (await post(client, VIDEOS, {"page": 1, "size": 20}, key=user.key))["data"]["videos"]["total"]
    assert total == 1


async def test_document_errors_stay_readable(client: httpx.AsyncClient) -> None:
    body = await post(client, "{ models { id colour } }")
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "colour" in body["errors"][0]["message"]
    body = await post(client, "{ models { id }")
    assert codes(body) == ["GRAPHQL_PARSE_FAILED"] and "Syntax Error" in body["errors"][0]["message"]
    body = await post(client, "query($u: ID!) { video(uuid: $u) { id } }")
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"] and "$u" in body["errors"][0]["message"]


async def test_an_unexpected_error_is_masked_and_logged_once_with_the_request_id(
        client: httpx.AsyncClient, make_user: Any, db: Database,
        caplog: pytest.LogCaptureFixture) -> None:
    user = await make_user()
    # Break the database under the running server (SQLite or PostgreSQL): a real fault, not a mock.
    async with db.writing() as uow:
        await uow.conn.execute(text("ALTER TABLE credit_entries RENAME TO credit_entries_gone"))
        await uow.commit()
    caplog.set_level(logging.ERROR, logger="kensa_gql.errors")
    r = await client.post("/graphql", json={"query": "{ creditHistory { total } }"},
                          headers={**user.headers, "X-Request-Id": "trace-0123456789"})
    assert r.status_code == 200
    body = r.json()
    assert body["data"] is None
    assert body["errors"] == [{"message": "Internal server error", "locations": [{"line": 1, "column": 3}],
                               "path": ["creditHistory"], "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]
    assert "credit_entries" not in r.text
    logged = [rec for rec in caplog.records if rec.name == "kensa_gql.errors"]
    assert len(logged) == 1
    assert getattr(logged[0], "request_id", None) == "trace-0123456789"
    assert logged[0].exc_info is not None and "credit_entries" in str(logged[0].exc_info[1])


async def test_expected_errors_are_not_logged_as_errors(client: httpx.AsyncClient, make_user: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    user = await make_user()
    caplog.set_level(logging.DEBUG)
    await post(client, DELETE, {"uuid": UNKNOWN}, key=user.key)
    await post(client, ME)
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


async def test_a_live_server_mounts_graphql_beside_rest(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, follow_redirects=False) as c:
        r = await c.post("/graphql", json={"query": "{ models { id } }"})
        assert r.status_code == 200  # not a redirect to /graphql/
        assert r.headers["x-request-id"]

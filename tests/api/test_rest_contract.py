"""The /api/v1 mount, exactly as the legacy reference: keys, formats, status codes, errors."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from kensa_gql.adapters.db.database import Database
from kensa_gql.services import accounts
from tests.support import wait_for_status

GENERATE = {"prompt": "a golden retriever in a meadow", "model": "sora-2", "duration": 10, "aspectRatio": "16:9"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DETAIL_KEYS = {"uuid", "prompt", "model", "status", "provider", "videoUrl", "thumbnailUrl", "startImageUrl",
               "duration", "resolution", "aspectRatio", "fileSize", "creditsUsed", "generationTime",
               "createdAt", "completedAt"}
SUMMARY_KEYS = {"uuid", "prompt", "model", "status", "videoUrl", "thumbnailUrl", "duration", "aspectRatio",
                "creditsUsed", "createdAt", "completedAt"}


async def generate(client: httpx.AsyncClient, user: Any, **overrides: Any) -> httpx.Response:
    return await client.post("/api/v1/video/generate", json={**GENERATE, **overrides}, headers=user.headers)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"success", "error"} and body["success"] is False
    assert set(body["error"]) == {"code", "message"} and body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


async def test_generate_answers_exactly_the_reference_fields(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=10)
    r = await generate(client, user)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"success", "data"} and body["success"] is True
    data = body["data"]
    assert set(data) == {"uuid", "status", "model", "creditsUsed", "createdAt"}
    assert data["status"] == "PENDING" and data["model"] == "sora-2" and data["creditsUsed"] == 2
    assert TIMESTAMP.match(data["createdAt"])


async def test_a_completed_video_has_every_detail_field(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=50)
    uuid = (await generate(client, user, model="wan-2-6", duration=5, aspectRatio="1:1", quality="720p")).json()[
        "data"]["uuid"]
    pending = (await client.get(f"/api/v1/video/{uuid}", headers=user.headers)).json()["data"]
    assert set(pending) == DETAIL_KEYS
    assert pending["videoUrl"] is None and pending["fileSize"] is None and pending["completedAt"] is None

    video = await wait_for_status(client, user, uuid, {"COMPLETED", "FAILED"})
    assert set(video) == DETAIL_KEYS
    assert video["status"] == "COMPLETED" and video["provider"] == "local"
    assert video["resolution"] == "720p" and video["aspectRatio"] == "1:1" and video["duration"] == 5
    assert video["creditsUsed"] == 22 and isinstance(video["generationTime"], int)
    assert TIMESTAMP.match(video["createdAt"]) and TIMESTAMP.match(video["completedAt"])
    assert video["videoUrl"].startswith(str(client.base_url)) and video["thumbnailUrl"].endswith(".jpg")
    media = await client.get(video["videoUrl"])
    assert media.status_code == 200 and len(media.content) == video["fileSize"]
    thumb = await client.get(video["thumbnailUrl"])
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"

    task = (await client.get("/api/v1/video/task", params={"uuid": uuid}, headers=user.headers)).json()["data"]
    assert task == {"uuid": uuid, "status": "COMPLETED", "progress": 100}


async def test_list_is_newest_first_with_exact_keys_and_pages(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=100)
    uuids = [(await generate(client, user, duration=4)).json()["data"]["uuid"] for _ in range(5)]
    r = await client.get("/api/v1/video/list", params={"page": 1, "pageSize": 2}, headers=user.headers)
    data = r.json()["data"]
    assert set(data) == {"videos", "total", "page", "pageSize"}
    assert (data["total"], data["page"], data["pageSize"]) == (5, 1, 2)
    assert [v["uuid"] for v in data["videos"]] == uuids[::-1][:2]
    assert all(set(v) == SUMMARY_KEYS for v in data["videos"])
    page3 = (await client.get("/api/v1/video/list?page=3&pageSize=2", headers=user.headers)).json()["data"]
    assert [v["uuid"] for v in page3["videos"]] == [uuids[0]]
    default = (await client.get("/api/v1/video/list", headers=user.headers)).json()["data"]
    assert (default["page"], default["pageSize"], len(default["videos"])) == (1, 20, 5)


@pytest.mark.parametrize("query", ["page=0", "page=-1", "pageSize=0", "pageSize=101", "page=abc",
                                   "pageSize=1.5", "page=1e3"])
async def test_bad_paging_is_a_400(client: httpx.AsyncClient, make_user: Any, query: str) -> None:
    user = await make_user()
    r = await client.get(f"/api/v1/video/list?{query}", headers=user.headers)
    assert r.status_code == 400 and error_of(r)["code"] == "BAD_USER_INPUT"


async def test_models_are_public_and_exact(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/config/models")
    models = r.json()["data"]["models"]
    assert [m["id"] for m in models] == ["sora-2", "veo-3-1", "wan-2-6", "seedance-1-5"]
    for m in models:
        assert set(m) == {"id", "name", "provider", "modes", "maxDuration", "resolutions", "aspectRatios",
                          "enabled"}
    assert models[0] == {"id": "sora-2", "name": "Sora 2", "provider": "OpenAI",
                         "modes": ["text-to-video", "image-to-video"], "maxDuration": 15,
                         "resolutions": ["720p", "1080p"], "aspectRatios": ["16:9", "9:16"], "enabled": True}
    assert {m["provider"] for m in models} == {"OpenAI", "Google", "Alibaba", "ByteDance"}


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer not-a-key",
                                    "Bearer kg_" + "x" * 40, "kg_abc"])
async def test_missing_malformed_or_unknown_keys_get_401(client: httpx.AsyncClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for method, path in [("POST", "/api/v1/video/generate"), ("GET", "/api/v1/video/list"),
                         ("GET", "/api/v1/credit/history"), ("GET", "/api/v1/video/task?uuid=x")]:
        r = await client.request(method, path, headers=headers, json=GENERATE if method == "POST" else None)
        assert r.status_code == 401, (method, path)
        assert error_of(r)["code"] == "UNAUTHENTICATED"


async def test_a_revoked_key_gets_401(client: httpx.AsyncClient, make_user: Any, db: Database) -> None:
    user = await make_user()
    assert (await client.get("/api/v1/video/list", headers=user.headers)).status_code == 200
    await accounts.revoke_key(user.key[:accounts.PREFIX_LENGTH], db=db)
    r = await client.get("/api/v1/video/list", headers=user.headers)
    assert r.status_code == 401


async def test_another_users_video_is_not_found_for_every_verb(client: httpx.AsyncClient, make_user: Any
                                                               ) -> None:
    owner, stranger = await make_user(), await make_user()
    uuid = (await generate(client, owner, duration=4)).json()["data"]["uuid"]
    for r in [await client.get(f"/api/v1/video/{uuid}", headers=stranger.headers),
              await client.get("/api/v1/video/task", params={"uuid": uuid}, headers=stranger.headers),
              await client.delete(f"/api/v1/video/{uuid}", headers=stranger.headers)]:
        assert r.status_code == 404 and error_of(r)["code"] == "NOT_FOUND"
    assert (await client.get("/api/v1/video/list", headers=stranger.headers)).json()["data"]["total"] == 0
    assert (await client.get(f"/api/v1/video/{uuid}", headers=owner.headers)).status_code == 200


async def test_unknown_and_malformed_uuids_are_not_found(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user()
    for path in ["/api/v1/video/00000000-0000-0000-0000-000000000000", "/api/v1/video/nonsense",
                 "/api/v1/video/task?uuid=nonsense", "/api/v1/video/%00%ff", "/api/v1/nowhere"]:
        r = await client.get(path, headers=user.headers)
        assert r.status_code == 404 and error_of(r)["code"] == "NOT_FOUND", path


async def test_task_without_uuid_is_a_400(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user()
    r = await client.get("/api/v1/video/task", headers=user.headers)
    assert r.status_code == 400 and "uuid" in error_of(r)["message"]


async def test_delete_is_soft_and_hides_the_video(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user()
    uuid = (await generate(client, user, duration=4)).json()["data"]["uuid"]
    r = await client.delete(f"/api/v1/video/{uuid}", headers=user.headers)
    assert r.status_code == 200 and r.json() == {"success": True, "data": {"uuid": uuid, "deleted": True}}
    for r in [await client.get(f"/api/v1/video/{uuid}", headers=user.headers),
              await client.get("/api/v1/video/task", params={"uuid": uuid}, headers=user.headers),
              await client.delete(f"/api/v1/video/{uuid}", headers=user.headers)]:
        assert r.status_code == 404
    assert (await client.get("/api/v1/video/list", headers=user.headers)).json()["data"]["total"] == 0


async def test_a_video_deleted_in_flight_is_cancelled_and_never_charged(client: httpx.AsyncClient, make_user: Any,
                                                                        db: Database) -> None:
    # Issue 12: a DELETE of a running video cancels it first (its hold released), then soft-deletes it.
    user = await make_user(credits=10)
    uuid = (await generate(client, user)).json()["data"]["uuid"]
    r = await client.delete(f"/api/v1/video/{uuid}", headers=user.headers)
    assert r.json() == {"success": True, "data": {"uuid": uuid, "deleted": True}}
    balance = await accounts.get_balance(accounts.Principal(user.user_id, user.email), db=db)
    assert (balance.available, balance.frozen, balance.used) == (10, 0, 0)


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/v1/video/generate"), ("PUT", "/api/v1/video/list"),
                                              ("POST", "/api/v1/video/task"), ("POST", "/api/v1/config/models"),
                                              ("PATCH", "/api/v1/video/00000000-0000-0000-0000-000000000000")])
async def test_a_wrong_method_is_a_405_in_the_envelope(client: httpx.AsyncClient, method: str, path: str) -> None:
    r = await client.request(method, path)
    assert r.status_code == 405 and error_of(r)["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"null", b"42", b'"text"', b"\xff\xfe", b'{"prompt": }'])
async def test_a_malformed_or_non_object_body_is_a_400(client: httpx.AsyncClient, make_user: Any,
                                                       body: bytes) -> None:
    user = await make_user()
    r = await client.post("/api/v1/video/generate", content=body,
                          headers={**user.headers, "content-type": "application/json"})
    assert r.status_code == 400 and error_of(r)["code"] == "BAD_USER_INPUT"


# 200 levels parse but are refused by the depth check; 20,000 make json.loads recurse too deep.
@pytest.mark.parametrize("depth", [200, 20_000])
async def test_deeply_nested_json_is_a_400_not_a_recursion_error(client: httpx.AsyncClient, make_user: Any,
                                                                 depth: int) -> None:
    user = await make_user()
    body = '{"prompt": "x", "extra": ' + "[" * depth + "]" * depth + "}"
    r = await client.post("/api/v1/video/generate", content=body,
                          headers={**user.headers, "content-type": "application/json", "Idempotency-Key": "k"})
    assert r.status_code == 400 and error_of(r)["code"] == "BAD_USER_INPUT"
    assert "nested more than 64 levels" in error_of(r)["message"]


@pytest.mark.parametrize(("change", "field"), [
    ({"model": "sora-9"}, "model"), ({"duration": 7}, "duration"), ({"duration": "10"}, "duration"),
    ({"aspectRatio": "21:9"}, "aspectRatio"), ({"quality": "4k"}, "quality"), ({"prompt": ""}, "prompt"),
    ({"prompt": "x" * 6000}, "prompt"), ({"startImageUrl": "http://169.254.169.254/latest"}, "startImageUrl"),
    ({"startImageUrl": "http://localhost:8000/a.png"}, "startImageUrl"),
    ({"startImageUrl": "https://u:p@example.com/a.png"}, "startImageUrl"),
])
async def test_invalid_generate_requests_name_the_field_and_charge_nothing(
        client: httpx.AsyncClient, make_user: Any, db: Database, change: dict[str, Any], field: str) -> None:
    user = await make_user(credits=10)
    r = await generate(client, user, **change)
    assert r.status_code == 400
    assert error_of(r)["message"].startswith(field)
    balance = await accounts.get_balance(accounts.Principal(user.user_id, user.email), db=db)
    assert (balance.available, balance.frozen) == (10, 0)
    assert (await client.get("/api/v1/video/list", headers=user.headers)).json()["data"]["total"] == 0


async def test_insufficient_credits_is_a_402_and_writes_nothing(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=1)
    r = await generate(client, user)
    assert r.status_code == 402 and error_of(r)["code"] == "INSUFFICIENT_CREDITS"
    assert (await client.get("/api/v1/video/list", headers=user.headers)).json()["data"]["total"] == 0
    history = (await client.get("/api/v1/credit/history", headers=user.headers)).json()["data"]
    assert [t["transType"] for t in history["transactions"]] == ["GIFT"]


async def test_credit_history_shows_freeze_and_settle_newest_first(client: httpx.AsyncClient, make_user: Any
                                                                   ) -> None:
    user = await make_user(credits=10)
    uuid = (await generate(client, user)).json()["data"]["uuid"]
    await wait_for_status(client, user, uuid, {"COMPLETED"})
    data = (await client.get("/api/v1/credit/history?page=1&pageSize=10", headers=user.headers)).json()["data"]
    assert set(data) == {"transactions", "total", "page", "pageSize"} and data["total"] == 3
    kinds = [(t["transType"], t["credits"], t["balanceAfter"], t["videoUuid"]) for t in data["transactions"]]
    assert kinds == [("VIDEO_SETTLE", 0, 8, uuid), ("VIDEO_CONSUME", -2, 8, uuid), ("GIFT", 10, 10, None)]
    for t in data["transactions"]:
        assert set(t) == {"id", "transNo", "transType", "credits", "balanceAfter", "videoUuid", "createdAt"}
        assert TIMESTAMP.match(t["createdAt"])


async def test_health_and_readiness_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["database"] == "ok"


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/config/models")
    assert re.match(r"^[0-9a-f]{16}$", r.headers["x-request-id"])
    r = await client.get("/healthz", headers={"X-Request-Id": "trace-abc-12345"})
    assert r.headers["x-request-id"] == "trace-abc-12345"
    r = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"
